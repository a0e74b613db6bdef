package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/switchboard-im/switchboard/cluster"
)

// clusterCmd makes the cluster plane's secrets: the gossip key file and the CA and node
// certificates for mutual TLS between nodes (config keys cluster.secret_key_file and
// cluster.tls).
func clusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Make the secrets that authenticate the nodes of a cluster to each other"}
	var nodes string
	secrets := &cobra.Command{
		Use:   "secrets --out DIR [--nodes NAME,...]",
		Short: "Write a new cluster's secrets to DIR: gossip.key, ca.pem, ca.key and NAME.pem, NAME.key per node",
		Long: "Write a new cluster's secrets to DIR (created 0700; private keys 0600; existing files are never\n" +
			"overwritten): gossip.key for cluster.secret_key_file, ca.pem for cluster.tls.ca, and for each node\n" +
			"NAME.pem and NAME.key for cluster.tls.cert and cluster.tls.key. Keep ca.key offline: it signs\n" +
			"certificates for new nodes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, _ := cmd.Flags().GetString("out")
			if out == "" {
				return fmt.Errorf("--out DIR is required")
			}
			var names []string
			for _, n := range strings.Split(nodes, ",") {
				if n = strings.TrimSpace(n); n != "" {
					if strings.ContainsAny(n, "/\\") || strings.HasPrefix(n, ".") || n == "ca" || n == "gossip" {
						return fmt.Errorf("node name %q: not a file name of its own", n)
					}
					names = append(names, n)
				}
			}
			if len(names) == 0 {
				return fmt.Errorf("--nodes: at least one node name")
			}
			if err := cluster.WriteSecrets(out, names); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote gossip.key, ca.pem, ca.key and %d node certificates to %s\n", len(names), out)
			return nil
		},
	}
	secrets.Flags().String("out", "", "directory to write the secrets to")
	secrets.Flags().StringVar(&nodes, "nodes", "node", "comma-separated node names: one certificate each")
	key := &cobra.Command{
		Use:   "key",
		Short: "Print a new gossip key (base64, 32 bytes): a line for cluster.secret_key_file, for key rotation",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), cluster.NewKey())
		},
	}
	cmd.AddCommand(secrets, key)
	return cmd
}
