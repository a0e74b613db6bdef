// Package bench is the load generator behind `switchboard bench`. It speaks standard
// XMPP (c2s with STARTTLS or direct TLS, SASL SCRAM-SHA-256/SCRAM-SHA-1/PLAIN, resource
// binding; XEP-0114 for its echo component), so the same run can be pointed at
// Switchboard or at any other server, e.g. Prosody with mod_delegation.
//
// Every request carries an id and every reply is matched to it: a reply that is missing
// (timeout), extra, duplicated or wrong is counted as an error, never ignored. Runs are
// bounded: by a count or a duration, and always by MaxTime.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Scenarios.
const (
	Delegation = "delegation"
	Message    = "message"
	LoginScen  = "login"
	Idle       = "idle"
	Floor      = "floor"
	Flood      = "flood"
	S2S        = "s2s"
)

// Scenarios lists the scenario names.
var Scenarios = []string{Delegation, Message, LoginScen, Idle, Floor, Flood, S2S}

// Options of a run.
type Options struct {
	Client ClientConfig // Addr is --server

	Target string // message: the receivers' server (default: Client.Addr); s2s: server B's c2s

	TargetDomain string // s2s: domain B, served by Target (must differ from Client.Domain)
	Reverse      bool   // s2s: also send from B to A at the same rate, on the same connections

	Component       string // XEP-0114 address of the server ("" : run no echo component)
	ComponentJID    string // default bench.<domain>
	ComponentSecret string
	ComponentConns  int

	Users      int
	UserPrefix string
	Password   string

	Conns  int
	Window int
	Count  int64         // operations in all (0 with Duration: as many as fit)
	Dur    time.Duration // run for this long instead of Count
	Rate   float64       // delegation, floor, s2s (per direction): total requests per second (0: as fast as the window allows)

	Namespace string // delegation: the namespace of the IQ's payload
	To        string // delegation: where the IQs go (default: the domain)

	Sessions  int           // idle
	Hold      time.Duration // idle: how long the sessions stay idle before RSS is read
	ServerPID int           // idle, flood: the server process to read VmRSS of

	Flood string // flood: roster, presence or message

	Timeout time.Duration // a reply missing this long is an error; also bounds each login
	MaxTime time.Duration // hard limit of the whole run

	Progress io.Writer // progress notes (nil: none)
}

func (o *Options) defaults(scenario string) error {
	if o.Client.Addr == "" && scenario != Floor {
		return errors.New("bench: no server address")
	}
	if o.Client.Domain == "" {
		o.Client.Domain = "localhost"
	}
	if o.ComponentJID == "" {
		o.ComponentJID = "bench." + o.Client.Domain
	}
	if o.ComponentConns <= 0 {
		o.ComponentConns = 1
	}
	if o.Users <= 0 {
		o.Users = 1
	}
	if o.UserPrefix == "" {
		o.UserPrefix = "bench"
	}
	if o.Conns <= 0 {
		o.Conns = 1
	}
	if o.Window <= 0 {
		o.Window = 1
	}
	if o.Count <= 0 && o.Dur <= 0 {
		o.Count = 1000
	}
	if o.Namespace == "" {
		o.Namespace = "urn:example:bench"
	}
	if o.To == "" {
		o.To = o.Client.Domain
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxTime <= 0 {
		o.MaxTime = 10 * time.Minute
	}
	if o.Target == "" {
		o.Target = o.Client.Addr
	}
	if o.Sessions <= 0 {
		o.Sessions = 100
	}
	if o.Client.Timeout <= 0 {
		o.Client.Timeout = o.Timeout
	}
	return nil
}

// User returns the i-th bench account's localpart.
func (o *Options) User(i int) string { return o.UserPrefix + strconv.Itoa(i%o.Users) }

func (o *Options) notef(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", args...)
	}
}

// Run runs one scenario. An error means the run could not be set up (no component, a
// login that failed before the load started); errors during the load are in the Result.
func Run(ctx context.Context, scenario string, o Options) (*Result, error) {
	if err := o.defaults(scenario); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.MaxTime)
	defer cancel()
	switch scenario {
	case Delegation:
		return runDelegation(ctx, &o)
	case Message:
		return runMessage(ctx, &o)
	case LoginScen:
		return runLogin(ctx, &o)
	case Idle:
		return runIdle(ctx, &o)
	case Floor:
		return runFloor(ctx, &o)
	case Flood:
		return runFlood(ctx, &o)
	case S2S:
		return runS2S(ctx, &o)
	}
	return nil, fmt.Errorf("bench: unknown scenario %q (one of %v)", scenario, Scenarios)
}

// split divides total among n workers.
func split(total int64, n, i int) int64 {
	q := total / int64(n)
	if int64(i) < total%int64(n) {
		q++
	}
	return q
}

func runID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// loginAll logs in n clients (client i as user i on addr) with limited parallelism.
func loginAll(ctx context.Context, o *Options, addr string, n, first int, base time.Time) ([]*Client, error) {
	cfg := o.Client
	cfg.Addr = addr
	return loginAllCfg(ctx, o, cfg, n, first, base)
}

// loginAllCfg logs in n clients (client i as user i) with cfg (another server and domain).
func loginAllCfg(ctx context.Context, o *Options, cfg ClientConfig, n, first int, base time.Time) ([]*Client, error) {
	out := make([]*Client, n)
	errs := make([]error, n)
	rid := runID()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			idx := first + i
			out[i], errs[i] = Login(ctx, &cfg, o.User(idx), o.Password, "b"+rid+"-"+strconv.Itoa(idx), base)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeAll(out)
		return nil, fmt.Errorf("bench: login: %w", err)
	}
	return out, nil
}

func closeAll(cs []*Client) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// stopper tells workers when to stop sending (duration over) and when the hard limit
// struck (ctx done: connections are closed under them).
type stopper struct {
	stop    atomic.Bool
	aborted atomic.Bool
}

func newStopper(ctx context.Context, o *Options, onAbort func()) (*stopper, func()) {
	s := &stopper{}
	var t *time.Timer
	if o.Dur > 0 {
		t = time.AfterFunc(o.Dur, func() { s.stop.Store(true) })
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			s.aborted.Store(true)
			s.stop.Store(true)
			onAbort()
		case <-done:
		}
	}()
	return s, func() {
		if t != nil {
			t.Stop()
		}
		close(done)
	}
}

func (o *Options) perConn(i int) int64 {
	if o.Dur > 0 {
		return -1
	}
	return split(o.Count, o.Conns, i)
}
