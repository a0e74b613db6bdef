package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/delegation"
)

// Sources shown by `delegation ls` besides delegation.SourceConfig / SourceEtcd.
const (
	sourceOverridden = delegation.SourceConfig + " (overridden)"
	sourceUnserved   = delegation.SourceEtcd + " (host not served)"
)

func delegationCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delegation",
		Short: "Manage XEP-0355 namespace delegation rules (etcd rules override the config file's)",
	}
	var filters []string
	set := &cobra.Command{
		Use:   "set HOST NAMESPACE JID [--filter ATTR]...",
		Short: "Delegate a namespace of a host to a managing entity (stored in etcd, applied cluster-wide)",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, ns := strings.ToLower(args[0]), args[1]
			r := delegation.Rule{JID: strings.ToLower(args[2]), Filtering: filters}
			// Check everything that needs no etcd first, so mistakes fail fast.
			if err := delegation.Validate(ns, r); err != nil {
				return err
			}
			if err := g.checkHost(host); err != nil {
				return err
			}
			return g.withStore(cmd, func(ctx context.Context, cfg *config.Config, cli *clientv3.Client) error {
				if err := delegation.NewStore(cli, cfg.Etcd.Prefix).Set(ctx, host, ns, r); err != nil {
					return err
				}
				msg := fmt.Sprintf("delegated %s of %s to %s", ns, host, r.JID)
				if len(r.Filtering) > 0 {
					msg += fmt.Sprintf(" (filtering: %s)", strings.Join(r.Filtering, ", "))
				}
				fmt.Fprintln(cmd.OutOrStdout(), msg)
				if c, ok := configRule(cfg, host, ns); ok {
					fmt.Fprintf(cmd.OutOrStdout(), "this overrides the config file's rule (to %s)\n", c.JID)
				}
				return nil
			})
		},
	}
	set.Flags().StringSliceVar(&filters, "filter", nil, "attribute that must be present on the IQ's first child for it to be delegated (repeatable)")

	rm := &cobra.Command{
		Use:   "rm HOST NAMESPACE",
		Short: "Remove a delegation stored in etcd (the config file's rule, if any, applies again)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, ns := strings.ToLower(args[0]), args[1]
			return g.withStore(cmd, func(ctx context.Context, cfg *config.Config, cli *clientv3.Client) error {
				c, inConfig := configRule(cfg, host, ns)
				err := delegation.NewStore(cli, cfg.Etcd.Prefix).Remove(ctx, host, ns)
				switch {
				case errors.Is(err, delegation.ErrNotFound) && inConfig:
					return fmt.Errorf("the delegation of %s of %s (to %s) lives in the config file %s, not in etcd: remove it there",
						ns, host, c.JID, cmp.Or(g.configFile, "(none)"))
				case errors.Is(err, delegation.ErrNotFound):
					return fmt.Errorf("no delegation of %s of %s in etcd", ns, host)
				case err != nil:
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed the delegation of %s of %s\n", ns, host)
				if inConfig {
					fmt.Fprintf(cmd.OutOrStdout(), "the config file's rule applies again (to %s)\n", c.JID)
				}
				return nil
			})
		},
	}

	ls := &cobra.Command{
		Use:   "ls [HOST]",
		Short: "List the delegation rules of all hosts, or of one, with their source",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withStore(cmd, func(ctx context.Context, cfg *config.Config, cli *clientv3.Client) error {
				snap, err := delegation.NewStore(cli, cfg.Etcd.Prefix).Load(ctx)
				if err != nil {
					return err
				}
				for _, e := range snap.Invalid {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: ignored by the nodes: %v\n", e)
				}
				only := ""
				if len(args) == 1 {
					only = strings.ToLower(args[0])
				}
				rows := delegationRows(cfg, snap.Rules, only)
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "HOST\tNAMESPACE\tJID\tFILTERING\tSOURCE")
				for _, r := range rows {
					filtering := "-"
					if len(r.rule.Filtering) > 0 {
						filtering = strings.Join(r.rule.Filtering, ",")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.host, r.rule.Namespace, r.rule.JID, filtering, r.source)
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(set, rm, ls)
	return cmd
}

func configRule(cfg *config.Config, host, ns string) (config.DelegationRule, bool) {
	h := cfg.Host(host)
	if h == nil {
		return config.DelegationRule{}, false
	}
	r, ok := h.Delegations[ns]
	return r, ok
}

type delegationRow struct {
	host   string
	rule   delegation.Rule
	source string
	rank   int // the effective rule first when one overrides another
}

// delegationRows merges the config's and etcd's rules (of host only, if not empty),
// sorted by host and namespace.
func delegationRows(cfg *config.Config, etcd map[string]map[string]delegation.Rule, host string) []delegationRow {
	var rows []delegationRow
	for _, h := range cfg.Hosts {
		if host != "" && h.Domain != host {
			continue
		}
		for ns, c := range h.Delegations {
			src := delegation.SourceConfig
			if _, ok := etcd[h.Domain][ns]; ok {
				src = sourceOverridden
			}
			r := delegation.Rule{Namespace: ns, JID: c.JID, Filtering: c.Filtering, Source: delegation.SourceConfig}
			rows = append(rows, delegationRow{host: h.Domain, rule: r, source: src, rank: 1})
		}
	}
	for h, rules := range etcd {
		if host != "" && h != host {
			continue
		}
		src := delegation.SourceEtcd
		if cfg.Host(h) == nil {
			src = sourceUnserved
		}
		for _, r := range rules {
			rows = append(rows, delegationRow{host: h, rule: r, source: src})
		}
	}
	slices.SortFunc(rows, func(a, b delegationRow) int {
		return cmp.Or(cmp.Compare(a.host, b.host), cmp.Compare(a.rule.Namespace, b.rule.Namespace), cmp.Compare(a.rank, b.rank))
	})
	return rows
}
