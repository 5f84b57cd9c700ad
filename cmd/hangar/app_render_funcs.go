package main

import (
	"errors"
	"path"
	"strconv"
	"strings"
	"text/template"
	"time"

	confdtmpl "github.com/abtreece/confd/pkg/template"
	confdutil "github.com/abtreece/confd/pkg/util"
	"github.com/kelseyhightower/memkv"

	"github.com/hangarhq/hangar/internal/limits"
)

// renderFuncs are the template functions a drone renders with.
//
// TODO(authortools): stand-in for internal/confdfuncs.New (branch
// confdfuncs), which is not on main yet: these are abtreece/confd's stock
// functions and memkv's, as drone/render has them today. Replace the body
// with `return confdfuncs.New(store)` once that package lands.
func renderFuncs(store *memkv.Store) template.FuncMap {
	m := template.FuncMap{
		"base": path.Base, "split": strings.Split, "json": confdtmpl.UnmarshalJsonObject,
		"jsonArray": confdtmpl.UnmarshalJsonArray, "dir": path.Dir, "map": confdtmpl.CreateMap,
		"getenv": confdtmpl.Getenv, "join": strings.Join, "datetime": time.Now,
		"toUpper": strings.ToUpper, "toLower": strings.ToLower, "contains": strings.Contains,
		"replace": strings.Replace, "trimSuffix": strings.TrimSuffix, "lookupIP": confdtmpl.LookupIP,
		"lookupIPV4": confdtmpl.LookupIPV4, "lookupIPV6": confdtmpl.LookupIPV6, "lookupSRV": confdtmpl.LookupSRV,
		"lookupIfaceIPV4": confdtmpl.LookupIfaceIPV4, "lookupIfaceIPV6": confdtmpl.LookupIfaceIPV6,
		"fileExists": confdutil.IsFileExist, "base64Encode": confdtmpl.Base64Encode,
		"base64Decode": confdtmpl.Base64Decode, "parseBool": strconv.ParseBool, "reverse": confdtmpl.Reverse,
		"sortByLength": confdtmpl.SortByLength, "sortKVByLength": confdtmpl.SortKVByLength,
		"add": func(a, b int) int { return a + b }, "sub": func(a, b int) int { return a - b },
		"div": func(a, b int) int { return a / b }, "mod": func(a, b int) int { return a % b },
		"mul": func(a, b int) int { return a * b },
		"seq": func(first, last int) ([]int, error) {
			if last >= first && uint64(last-first) >= limits.MaxRenderedFileBytes {
				return nil, errors.New("seq of too many numbers")
			}
			return confdtmpl.Seq(first, last), nil
		},
		"atoi": strconv.Atoi, "hostname": confdtmpl.GetHostname,
	}
	for name, fn := range store.FuncMap {
		m[name] = fn
	}
	return m
}
