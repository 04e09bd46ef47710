package caddymodule

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/thon-dev/thon/llm"
	"github.com/thon-dev/thon/store"
)

// defaultDatabase is where `thon run --config Caddyfile.example` keeps its
// database.
const defaultDatabase = "./data/thon.db"

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "lemonade",
		Usage: "setup|rescale [flags]",
		Short: "Sets up Lemonade Server for the hackathon's users, or rescales it",
		Long: `
Lemonade Server serves the LLM every participant uses. Its configuration is
sized to the number of users: each model gets one llama-server slot per user
(-np <users>) and the per-user context times the users.

thon lemonade setup writes Lemonade's config.json, user_models.json and
recipe_options.json (in /var/lib/lemonade), the systemd drop-in of lemond
with its API keys (--generate-keys), restarts lemond where systemd runs,
pulls and loads the chat and embedding models through Lemonade's API, and
writes kilo.jsonc (~/.thon/kilo.jsonc). Running it again changes nothing.

thon lemonade rescale rewrites the configuration for a new number of users,
keeping its models and options, and reloads the loaded models.

Users are counted from --groups (a groups YAML file; --group counts one
group), else from thon's database (--database), unless --users gives the
number. --out <dir> writes every file under <dir> at its system path
(<dir>/var/lib/lemonade/config.json, ...) instead; --dry-run writes nothing
and says what would change.`,
		CobraFunc: func(cmd *cobra.Command) {
			setup := &cobra.Command{
				Use:   "setup [flags]",
				Short: "Writes Lemonade's configuration and keys, pulls and loads the models, writes kilo.jsonc",
				Args:  cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					return runLemonadeSetup(cmdContext(c), c.OutOrStdout(), caddycmd.Flags{FlagSet: c.Flags()})
				},
			}
			f := setup.Flags()
			addUserFlags(f.String, f.Int)
			f.Bool("dry-run", false, "write nothing, contact nothing; say what would change")
			f.String("out", "", "write every file under this directory, at its system path, instead of the system paths")
			f.Bool("generate-keys", false, "generate Lemonade API keys when the drop-in has none (existing keys are kept)")
			f.String("external-ip", "", "IP address sandboxes reach this host at, for kilo.jsonc (default: the Docker bridge gateway, else localhost)")
			f.Bool("no-embedding", false, "no embedding model (Kilo's codebase indexing is left out)")
			f.String("llamacpp-args", "", "extra llama-server arguments for both models, e.g. \"--seed 42\"")
			f.String("model", "", "chat model checkpoint, org/repo:VARIANT (default "+llm.DefaultChatCheckpoint+")")
			f.String("model-name", "", "chat model name, without user. (default "+llm.DefaultChatName+")")
			f.String("mmproj", "", "multimodal projector file of the chat model; none for a text-only model (default "+llm.DefaultChatMMProj+" for the default model, none for another)")
			f.String("embedding-model", "", "embedding model checkpoint (default "+llm.DefaultEmbeddingCheckpoint+")")
			f.String("embedding-model-name", "", "embedding model name, without user. (default "+llm.DefaultEmbeddingName+")")
			f.String("url", "", "Lemonade Server's URL (default http://127.0.0.1:13305)")
			f.String("kilo-path", "", "where kilo.jsonc goes (default ~/.thon/kilo.jsonc)")
			cmd.AddCommand(setup)

			rescale := &cobra.Command{
				Use:   "rescale [flags]",
				Short: "Rewrites Lemonade's configuration for the number of users and reloads the loaded models",
				Args:  cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					return runLemonadeRescale(cmdContext(c), c.OutOrStdout(), caddycmd.Flags{FlagSet: c.Flags()})
				},
			}
			f = rescale.Flags()
			addUserFlags(f.String, f.Int)
			f.Bool("dry-run", false, "write nothing, reload nothing; say what would change")
			f.String("out", "", "the configuration is under this directory, at its system path (<out>/var/lib/lemonade)")
			f.String("config-dir", llm.DefaultConfigDir, "Lemonade's configuration directory")
			f.String("url", "", "Lemonade Server's URL (default http://127.0.0.1:13305)")
			f.String("api-key", "", "Lemonade's API key (default: THON_LEMONADE_API_KEY, else the lemond drop-in's)")
			f.String("admin-api-key", "", "Lemonade's admin API key (default: THON_LEMONADE_ADMIN_API_KEY, else the lemond drop-in's)")
			f.Bool("no-reload", false, "do not reload the loaded models")
			cmd.AddCommand(rescale)
		},
	})
}

func cmdContext(c *cobra.Command) context.Context {
	if ctx := c.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// addUserFlags defines the flags that count the users.
func addUserFlags(str func(name, value, usage string) *string, num func(name string, value int, usage string) *int) {
	str("groups", "", "groups YAML file to count the users in")
	str("group", "", "count only this group's users")
	str("database", defaultDatabase, "thon's database to count the users in, when there is no --groups")
	num("users", 0, "the number of users, instead of counting them")
}

// countUsers finds the number of users to size Lemonade for, and says
// where it comes from.
func countUsers(ctx context.Context, fl caddycmd.Flags) (int, string, error) {
	users, groupsFile, group, db := fl.Int("users"), fl.String("groups"), fl.String("group"), fl.String("database")
	switch {
	case users < 0:
		return 0, "", fmt.Errorf("--users: must be at least 1, got %d", users)
	case users > 0 && (groupsFile != "" || group != ""):
		return 0, "", errors.New("--users: give either the number of users or --groups/--group to count them")
	case users > llm.MaxUsers:
		return 0, "", fmt.Errorf("--users: at most %d", llm.MaxUsers)
	case users > 0:
		return users, "--users", nil
	}

	var counts []struct {
		group string
		n     int
	}
	var source string
	if groupsFile != "" {
		data, err := os.ReadFile(groupsFile)
		if err != nil {
			return 0, "", fmt.Errorf("--groups: %w", err)
		}
		roster, err := store.ParseRoster(groupsFile, data)
		if err != nil {
			return 0, "", fmt.Errorf("--groups: %w", err)
		}
		for _, g := range roster.Groups {
			counts = append(counts, struct {
				group string
				n     int
			}{g.Name, len(g.Users)})
		}
		source = groupsFile
	} else {
		if _, err := os.Stat(db); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return 0, "", fmt.Errorf("--database: %s does not exist; give --groups <file>, --users <n> or the path of thon's database", db)
			}
			return 0, "", fmt.Errorf("--database: %w", err)
		}
		st, err := store.Open(ctx, db)
		if err != nil {
			return 0, "", fmt.Errorf("--database: %w", err)
		}
		defer st.Close()
		list, err := st.ListUsers(ctx)
		if err != nil {
			return 0, "", fmt.Errorf("--database: %w", err)
		}
		groups, err := st.ListGroups(ctx)
		if err != nil {
			return 0, "", fmt.Errorf("--database: %w", err)
		}
		for _, g := range groups {
			n := 0
			for _, u := range list {
				if u.Group == g.Name {
					n++
				}
			}
			counts = append(counts, struct {
				group string
				n     int
			}{g.Name, n})
		}
		source = db
	}

	total, found := 0, group == ""
	for _, c := range counts {
		if group == "" || c.group == group {
			total += c.n
			found = true
		}
	}
	if !found {
		return 0, "", fmt.Errorf("--group: no group %q in %s", group, source)
	}
	if group != "" {
		source = fmt.Sprintf("group %s of %s", group, source)
	}
	if total == 0 {
		return 1, source + ", which has no users; sized for 1", nil
	}
	return total, source, nil
}

// lemonadeSettings are the Lemonade settings from the model flags, with
// errors naming the flag.
func lemonadeSettings(fl caddycmd.Flags) (llm.Settings, error) {
	s := llm.DefaultSettings()
	if v := fl.String("model"); v != "" {
		if v != s.Chat.Checkpoint {
			s.Chat.MMProj = "" // another model is text-only unless --mmproj says otherwise
		}
		s.Chat.Checkpoint = v
	}
	switch v := fl.String("mmproj"); v {
	case "":
	case "none":
		s.Chat.MMProj = ""
	default:
		s.Chat.MMProj = v
	}
	if v := fl.String("model-name"); v != "" {
		s.Chat.Name = v
	}
	if v := fl.String("embedding-model"); v != "" {
		if v != s.Embedding.Checkpoint {
			s.Embedding.Dimensions = 0 // Kilo detects it
		}
		s.Embedding.Checkpoint = v
	}
	if v := fl.String("embedding-model-name"); v != "" {
		s.Embedding.Name = v
	}
	if fl.Bool("no-embedding") {
		s.Embedding.Enabled = false
	}
	if v := fl.String("llamacpp-args"); v != "" {
		if _, err := llm.ParseLlamacppArgs(v); err != nil {
			return s, fmt.Errorf("--llamacpp-args: %w", err)
		}
		s.ExtraArgs = v
	}
	if err := s.Validate(); err != nil {
		msg := err.Error()
		for prefix, flag := range map[string]string{
			"chat.checkpoint": "--model", "chat.name": "--model-name", "chat.mmproj": "--mmproj",
			"embedding.checkpoint": "--embedding-model", "embedding.name": "--embedding-model-name",
		} {
			if rest, ok := strings.CutPrefix(msg, prefix+":"); ok {
				return s, fmt.Errorf("%s:%s", flag, rest)
			}
		}
		return s, err
	}
	return s, nil
}

// checkURL checks a --url flag.
func checkURL(fl caddycmd.Flags) (string, error) {
	u := fl.String("url")
	if u == "" {
		return "", nil
	}
	if _, err := llm.NewClient(u, "", "", nil); err != nil {
		return "", fmt.Errorf("--url: %q is not an http(s) URL such as %s", u, defaultLemonadeURL)
	}
	return u, nil
}

// absFlag makes a path flag absolute, naming the flag in errors.
func absFlag(fl caddycmd.Flags, name string) (string, error) {
	p := fl.String(name)
	if p == "" {
		return "", nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", name, err)
	}
	return abs, nil
}

func runLemonadeSetup(ctx context.Context, stdout io.Writer, fl caddycmd.Flags) error {
	settings, err := lemonadeSettings(fl)
	if err != nil {
		return err
	}
	ip := fl.String("external-ip")
	if ip != "" {
		if a, err := netip.ParseAddr(ip); err != nil || a.Zone() != "" {
			return fmt.Errorf("--external-ip: %q is not an IP address", ip)
		}
	}
	url, err := checkURL(fl)
	if err != nil {
		return err
	}
	out, err := absFlag(fl, "out")
	if err != nil {
		return err
	}
	kiloPath, err := absFlag(fl, "kilo-path")
	if err != nil {
		return err
	}
	users, source, err := countUsers(ctx, fl)
	if err != nil {
		return err
	}

	s := &llm.Setup{
		Users:        users,
		Settings:     &settings,
		GenerateKeys: fl.Bool("generate-keys"),
		ExternalIP:   ip,
		DryRun:       fl.Bool("dry-run"),
		OutDir:       out,
		KiloPath:     kiloPath,
		LemonadeURL:  url,
	}
	fmt.Fprintf(stdout, "setting up Lemonade Server for %s (from %s)\n", userCount(users), source)
	rep, err := s.Run(ctx, func(step, msg string) {
		fmt.Fprintf(stdout, "  %-32s %s\n", step, msg)
	})
	if err != nil {
		return err
	}
	if rep.KeysGenerated {
		fmt.Fprintf(stdout, "\nnew Lemonade API keys (shown once; they are in the lemond drop-in):\n  LEMONADE_API_KEY=%s\n", rep.APIKey)
		if rep.AdminKey != "" {
			fmt.Fprintf(stdout, "  LEMONADE_ADMIN_API_KEY=%s\n", rep.AdminKey)
		}
		fmt.Fprintln(stdout, "give thon the API key: THON_LEMONADE_API_KEY=<key> in its environment (/etc/default/thon)")
	}
	switch {
	case s.DryRun:
		fmt.Fprintln(stdout, "\ndry run: nothing was written")
	case rep.Changed:
		fmt.Fprintln(stdout, "\ndone")
	default:
		fmt.Fprintln(stdout, "\nnothing changed: Lemonade Server is set up for these users")
	}
	if rep.RestartCommand != "" {
		fmt.Fprintf(stdout, "restart Lemonade Server so it reads the new configuration: %s\n", rep.RestartCommand)
	}
	return nil
}

func runLemonadeRescale(ctx context.Context, stdout io.Writer, fl caddycmd.Flags) error {
	url, err := checkURL(fl)
	if err != nil {
		return err
	}
	out, err := absFlag(fl, "out")
	if err != nil {
		return err
	}
	configDir := fl.String("config-dir")
	if !filepath.IsAbs(configDir) {
		return fmt.Errorf("--config-dir: %q must be an absolute path", configDir)
	}
	if out != "" {
		configDir = filepath.Join(out, configDir)
	}
	users, source, err := countUsers(ctx, fl)
	if err != nil {
		return err
	}

	var client *llm.Client
	if !fl.Bool("no-reload") {
		apiKey, adminKey := fl.String("api-key"), fl.String("admin-api-key")
		if apiKey == "" && adminKey == "" {
			apiKey, adminKey = os.Getenv("THON_LEMONADE_API_KEY"), os.Getenv("THON_LEMONADE_ADMIN_API_KEY")
		}
		if apiKey == "" && adminKey == "" {
			dropIn := filepath.Join(out, llm.DefaultSystemdDir, llm.DropInPath)
			if b, err := os.ReadFile(dropIn); err == nil {
				apiKey, adminKey = llm.DropInKeys(string(b))
			}
		}
		if client, err = llm.NewClient(cmp.Or(url, defaultLemonadeURL), apiKey, adminKey, nil); err != nil {
			return fmt.Errorf("--api-key: %w", err)
		}
	}

	fmt.Fprintf(stdout, "rescaling Lemonade Server to %s (from %s)\n", userCount(users), source)
	res, err := new(llm.Rescaler).Rescale(ctx, llm.RescaleOptions{ConfigDir: configDir, Users: users, DryRun: fl.Bool("dry-run"), Client: client})
	for _, f := range res.Files {
		fmt.Fprintf(stdout, "  %-32s %s %s\n", f.Name, f.Status, f.Path)
	}
	for _, m := range res.Models {
		fmt.Fprintf(stdout, "  %-32s %s: %s\n", m.ModelName, m.Status, m.Message)
	}
	if err != nil {
		return err
	}
	if res.PreviousUsers > 0 {
		fmt.Fprintf(stdout, "the configuration was sized for %s\n", userCount(res.PreviousUsers))
	}
	switch {
	case res.DryRun:
		fmt.Fprintln(stdout, "dry run: nothing was written")
	case !res.Changed:
		fmt.Fprintln(stdout, "nothing changed")
	}
	if res.RestartCommand != "" {
		fmt.Fprintf(stdout, "restart Lemonade Server so it reads the new configuration: %s\n", res.RestartCommand)
	}
	return nil
}

// userCount is "1 user" or "<n> users".
func userCount(n int) string {
	if n == 1 {
		return "1 user"
	}
	return fmt.Sprintf("%d users", n)
}
