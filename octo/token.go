package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/tokens"
)

func tokenCmd(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: token needs create, list or revoke", errUsage)
	}
	fs := flag.NewFlagSet("token "+args[0], flag.ContinueOnError)
	path := fs.String("config", "", "config file (for server.state_dir and [users])")
	admin := fs.Bool("admin", false, "the token may act for any user with ?user=")
	name := fs.String("name", "", "a note saying what the token is for")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	cfg, err := config.Load(configPath(*path))
	if err != nil {
		return err
	}
	switch args[0] {
	case "create":
		if len(pos) != 1 {
			return fmt.Errorf("%w: token create takes one USER", errUsage)
		}
		return withStore(cfg.Server.StateDir, true, func(s *tokens.Store) error {
			return tokenCreate(s, cfg.Users, pos[0], *name, *admin)
		})
	case "list":
		if len(pos) != 0 {
			return fmt.Errorf("%w: token list takes no arguments", errUsage)
		}
		return withStore(cfg.Server.StateDir, false, tokenList)
	case "revoke":
		if len(pos) != 1 {
			return fmt.Errorf("%w: token revoke takes one ID (see octo token list)", errUsage)
		}
		return withStore(cfg.Server.StateDir, false, func(s *tokens.Store) error {
			if s == nil {
				return fmt.Errorf("%w: %q (no tokens in %s yet)", tokens.ErrNotFound, pos[0], cfg.Server.StateDir)
			}
			t, err := s.Revoke(pos[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "revoked token %s of %s\n", t.ID, t.User)
			return nil
		})
	default:
		return fmt.Errorf("%w: unknown token command %q", errUsage, args[0])
	}
}

// withStore runs fn with the token store in dir. Only a command that
// writes (create) may create the state dir; for the others a missing dir is
// a store without tokens (fn gets nil).
func withStore(dir string, create bool, fn func(*tokens.Store) error) error {
	if !create {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return fn(nil)
		}
	}
	store, err := tokens.Open(dir)
	if err != nil {
		return err
	}
	defer store.Close()
	return fn(store)
}

// tokenCreate refuses tokens that could never be used: for users that do
// not exist or, unless admin, that [users] does not serve.
func tokenCreate(store *tokens.Store, policy config.Users, name, note string, admin bool) error {
	if _, err := user.Lookup(name); err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	if _, err := backend.NewUsers(policy).Lookup(name); err != nil && !admin {
		return fmt.Errorf("token create: %w", err)
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "note: %v; this admin token can only act for others (?user=)\n", errors.Unwrap(err))
	}
	secret, t, err := store.Create(name, note, admin)
	if err != nil {
		return err
	}
	kind := "token"
	if admin {
		kind = "admin token"
	}
	fmt.Fprintf(os.Stderr, "created %s %s for %s; it is shown only this once:\n", kind, t.ID, name)
	fmt.Println(secret)
	return nil
}

func tokenList(store *tokens.Store) error {
	var list []tokens.Token
	if store != nil {
		var err error
		if list, err = store.List(); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tADMIN\tCREATED\tLAST USED\tNAME")
	for _, t := range list {
		last := "never"
		if !t.LastUsed.IsZero() {
			last = t.LastUsed.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", t.ID, t.User, t.Admin, t.Created.Format(time.RFC3339), last, t.Name)
	}
	return tw.Flush()
}
