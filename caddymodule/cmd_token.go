package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/thon-dev/thon/store"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "token",
		Usage: "create --name <name> | list | revoke <name> [--address <admin>]",
		Short: "Makes, lists and revokes the organisers' API tokens",
		Long: `
An organiser API token lets a script or a person use the whole REST API of
thon's sites: send it as "Authorization: Bearer <token>" (Swagger UI at
/docs takes it with its Authorize button). Tokens start with thon_org_;
thon keeps only their SHA-256, so a token is shown once, when it is made.

thon token create --name <name> makes one and prints it alone on the last
line of its output (TOKEN=$(thon token create --name ci | tail -n 1)).
thon token list shows the names and first characters of the tokens.
thon token revoke <name> revokes one: it is refused from then on.

The commands talk to the running thon's admin endpoint (--address, default
localhost:2019, else the admin address of --config), which asks for no
credentials: keep it to the host (localhost, or a unix socket with mode
0600: admin unix//run/thon/admin.sock|0600).`,
		CobraFunc: func(cmd *cobra.Command) {
			pf := cmd.PersistentFlags()
			pf.String("address", "", "the admin endpoint of the running thon (default localhost:2019)")
			pf.StringP("config", "c", "", "a config file to read the admin endpoint's address from")
			pf.String("adapter", "", "the adapter of --config")

			create := &cobra.Command{
				Use:   "create --name <name>",
				Short: "Makes an organiser API token and prints it on the last line",
				Args:  cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					ac, err := tokenAdmin(caddycmd.Flags{FlagSet: c.Flags()})
					if err != nil {
						return err
					}
					name, _ := c.Flags().GetString("name")
					return runTokenCreate(c.OutOrStdout(), ac, name)
				},
			}
			create.Flags().String("name", "", "the token's name: lowercase letters, digits and hyphens (required)")
			cmd.AddCommand(create)

			cmd.AddCommand(&cobra.Command{
				Use:   "list",
				Short: "Lists the organiser API tokens by name",
				Args:  cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					ac, err := tokenAdmin(caddycmd.Flags{FlagSet: c.Flags()})
					if err != nil {
						return err
					}
					return runTokenList(c.OutOrStdout(), ac)
				},
			})

			cmd.AddCommand(&cobra.Command{
				Use:   "revoke <name>",
				Short: "Revokes the organiser API token named name",
				Args:  cobra.ExactArgs(1),
				RunE: func(c *cobra.Command, args []string) error {
					ac, err := tokenAdmin(caddycmd.Flags{FlagSet: c.Flags()})
					if err != nil {
						return err
					}
					return runTokenRevoke(c.OutOrStdout(), ac, args[0])
				},
			})
		},
	})
}

// tokenAdmin finds the admin endpoint as Caddy's own commands do (reload,
// stop): --address, else --config's admin address, else the default.
func tokenAdmin(fl caddycmd.Flags) (adminClient, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return adminClient{}, err
	}
	return adminClient{addr: addr}, nil
}

// createdTokenAnswer is POST /thon/tokens's answer.
type createdTokenAnswer struct {
	store.APIToken
	Token string `json:"token"`
}

func runTokenCreate(stdout io.Writer, ac adminClient, name string) error {
	if name == "" {
		return errors.New("--name is required: the token's name, such as ci or laptop")
	}
	var made createdTokenAnswer
	if err := ac.do(http.MethodPost, "/thon/tokens", map[string]string{"name": name}, &made); err != nil {
		return err
	}
	if made.Token == "" {
		return fmt.Errorf("the admin API at %s answered no token", ac.addr)
	}
	fmt.Fprintf(stdout, "made organiser API token %q (%s); it is shown only now:\n%s\n", made.Name, made.Prefix, made.Token)
	return nil
}

func runTokenList(stdout io.Writer, ac adminClient) error {
	var list struct {
		Tokens []store.APIToken `json:"tokens"`
	}
	if err := ac.do(http.MethodGet, "/thon/tokens", nil, &list); err != nil {
		return err
	}
	if len(list.Tokens) == 0 {
		fmt.Fprintln(stdout, "no organiser API tokens")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPREFIX\tCREATED")
	for _, t := range list.Tokens {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.Prefix, t.CreatedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func runTokenRevoke(stdout io.Writer, ac adminClient, name string) error {
	var t store.APIToken
	if err := ac.do(http.MethodDelete, "/thon/tokens/"+url.PathEscape(name), nil, &t); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked organiser API token %q (%s)\n", t.Name, t.Prefix)
	return nil
}
