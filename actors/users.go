package actors

import "github.com/switchboard-im/switchboard/cluster"

// membersChanged: user sessions are local to each node for now (see the closing note of
// the cluster issue); owners per bare JID come with the partitioned user directory.
func (r *Router) membersChanged(members []cluster.Member, left []string) {}
