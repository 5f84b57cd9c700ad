package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newUserCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage API users (admins only)",
		Long: `Manage the API users of your tenant. Every user has a role:

  viewer  lists and reads apps, runtimes, clusters and jobs
  member  also pushes apps, creates runtimes, creates, changes and deletes
          clusters, and cancels jobs
  admin   also manages the tenant's users and reads its audit log

A user's token is shown once, when the user is created; pilot keeps only
its hash. To give a user a new token, delete and create it again.`,
		Example: `  hangar user create alice --role member
  hangar user list
  hangar user delete alice`,
		RunE: groupRunE,
	}
	cmd.AddCommand(newUserCreateCmd(c), newUserListCmd(c), newUserDeleteCmd(c))
	return cmd
}

// parseRole reads a role as users write it.
func parseRole(s string) (pilotv1.Role, error) {
	r, err := pilotv1.ParseRole(strings.ToLower(strings.TrimSpace(s)))
	if err != nil {
		return r, fmt.Errorf("--%w", err)
	}
	return r, nil
}

func roleName(r pilotv1.Role) string { return enumName(r.String(), "ROLE_") }

type userCreateOptions struct {
	role   string
	tenant string
}

func newUserCreateCmd(c *cli) *cobra.Command {
	o := userCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME --role admin|member|viewer",
		Short: "Create a user and print its API token (once)",
		Long: `Create an API user in your tenant and print its token. The token is shown
only now: store it (a password manager, a CI secret) and hand it to the user,
who passes it with --token or HANGAR_TOKEN.

Admins of the "default" tenant (the platform team) may create users in another
tenant with --tenant, which creates that tenant.`,
		Example: `  hangar user create alice --role member
  hangar user create ci --role viewer -o json | jq -r .token
  hangar user create bob --role admin --tenant acme`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.userCreate(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.role, "role", "", "the user's role: admin, member or viewer (required)")
	f.StringVar(&o.tenant, "tenant", "", "tenant of the new user (default: yours)")
	return cmd
}

func (c *cli) userCreate(ctx context.Context, name string, o userCreateOptions) error {
	if o.role == "" {
		return fmt.Errorf("--role is required: admin, member or viewer")
	}
	role, err := parseRole(o.role)
	if err != nil {
		return err
	}
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.users.CreateUser(ctx, &pilotv1.CreateUserRequest{Name: name, Role: role, Tenant: o.tenant})
	if err != nil {
		return c.rpcError("create user "+name, err, nil)
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	u := resp.GetUser()
	fmt.Fprintf(c.stdout, "User %s created in tenant %s with role %s.\n\n", u.GetName(), u.GetTenant(), roleName(u.GetRole()))
	fmt.Fprintf(c.stdout, "  %s\n\n", resp.GetToken())
	fmt.Fprintln(c.stdout, "Store this token now: it is shown only once and pilot cannot show it again.")
	fmt.Fprintf(c.stdout, "The user passes it with --token or %s.\n", envToken)
	return nil
}

func newUserListCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List your tenant's users",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.userList(cmd.Context())
		},
	}
}

func (c *cli) userList(ctx context.Context) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.users.ListUsers(ctx, &pilotv1.ListUsersRequest{})
	if err != nil {
		return c.rpcError("list users", err, nil)
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	tw := newTable(c.stdout)
	row(tw, "NAME", "TENANT", "ROLE", "CREATED")
	for _, u := range resp.GetUsers() {
		row(tw, u.GetName(), u.GetTenant(), roleName(u.GetRole()), formatTime(u.GetCreatedAt()))
	}
	return tw.Flush()
}

func newUserDeleteCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   "Delete a user; its token stops working at once",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.userDelete(cmd.Context(), args[0])
		},
	}
}

func (c *cli) userDelete(ctx context.Context, name string) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.users.DeleteUser(ctx, &pilotv1.DeleteUserRequest{Name: name})
	if err != nil {
		return c.rpcError("delete user "+name, err, nil)
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	fmt.Fprintf(c.stdout, "User %s deleted; its token no longer works.\n", name)
	return nil
}

func newWhoAmICmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show the user, tenant and role of your API token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.whoami(cmd.Context())
		},
	}
}

func (c *cli) whoami(ctx context.Context) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	u, err := cl.users.WhoAmI(ctx, &pilotv1.WhoAmIRequest{})
	if err != nil {
		return c.rpcError("who am I", err, nil)
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, u)
	}
	fmt.Fprintf(c.stdout, "%s (tenant %s, role %s) at %s\n", u.GetName(), u.GetTenant(), roleName(u.GetRole()), c.pilotAddr)
	return nil
}

type auditOptions struct {
	limit int
}

func newAuditCmd(c *cli) *cobra.Command {
	o := auditOptions{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show your tenant's audit log, newest first (admins only)",
		Long: `Show the audit log of your tenant: every call that changed something (or
tried to), with who made it, when, the object it named and the result code.
Request contents are never recorded.`,
		Example: `  hangar audit
  hangar audit --limit 500 -o json | jq '.entries[] | select(.result != "OK")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.audit(cmd.Context(), o)
		},
	}
	cmd.Flags().IntVar(&o.limit, "limit", 100, "at most this many entries (up to 1000)")
	return cmd
}

func (c *cli) audit(ctx context.Context, o auditOptions) error {
	if o.limit < 1 || o.limit > 1000 {
		return fmt.Errorf("--limit %d: give 1 to 1000", o.limit)
	}
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.audit.ListAudit(ctx, &pilotv1.ListAuditRequest{Limit: int32(o.limit)})
	if err != nil {
		return c.rpcError("read the audit log", err, nil)
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	if len(resp.GetEntries()) == 0 {
		fmt.Fprintln(c.stdout, "The audit log is empty.")
		return nil
	}
	tw := newTable(c.stdout)
	row(tw, "TIME", "USER", "CALL", "TARGET", "RESULT", "MESSAGE")
	for _, e := range resp.GetEntries() {
		call := e.GetMethod()
		if i := strings.LastIndexByte(call, '/'); i >= 0 {
			call = call[i+1:]
		}
		row(tw, formatTime(e.GetTime()), e.GetUser(), call, e.GetTarget(), e.GetResult(), firstLine(e.GetMessage()))
	}
	return tw.Flush()
}

type revokeOptions struct {
	reason string
}

func newRevokeCmd(c *cli) *cobra.Command {
	o := revokeOptions{}
	cmd := &cobra.Command{
		Use:   "revoke frontgate|drone ID",
		Short: "Revoke a frontgate's or a drone's certificate (platform admins only)",
		Long: `Revoke the identity of a frontgate (by frontgate id) or a drone (by node id),
say because its instance was compromised. Pilot disconnects it and refuses
its reconnects and certificate renewals; a revoked drone is also cut off by
its frontgate and loses its metadata access. Replace the node (or recreate
the network's clusters, for a frontgate) afterwards.

Only admins of the "default" tenant may revoke.`,
		Example: `  hangar revoke drone cln-1a2b3c4d --reason "instance compromised"
  hangar revoke frontgate fg-net-1a2b3c --reason "host retired"`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.revoke(cmd.Context(), args[0], args[1], o)
		},
	}
	cmd.Flags().StringVar(&o.reason, "reason", "", "why, for the revocation record")
	return cmd
}

func (c *cli) revoke(ctx context.Context, kind, id string, o revokeOptions) error {
	if kind != "frontgate" && kind != "drone" {
		return fmt.Errorf("%q: revoke a frontgate or a drone: `hangar revoke frontgate|drone ID`", kind)
	}
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.security.Revoke(ctx, &pilotv1.RevokeRequest{Kind: kind, Id: id, Reason: o.reason})
	if err != nil {
		return c.rpcError("revoke "+kind+" "+id, err, nil)
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	fmt.Fprintf(c.stdout, "%s %s revoked: pilot refuses it from now on.\n", kind, id)
	return nil
}
