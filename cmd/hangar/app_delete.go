package main

import "github.com/spf13/cobra"

func newAppDeleteCmd(c *cli) *cobra.Command { return &cobra.Command{Use: "delete", Hidden: true} }
