package main

import (
	"text/template"

	"github.com/kelseyhightower/memkv"

	"github.com/hangarhq/hangar/internal/confdfuncs"
)

// renderFuncs are the template functions a drone renders with.
func renderFuncs(store *memkv.Store) template.FuncMap {
	return confdfuncs.New(store)
}
