package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-im/switchboard/accounts"
)

// CreateUsers makes sure the bench accounts PREFIX0..PREFIX(n-1) exist in a Switchboard
// account store with this password (existing ones get it set), four at a time.
func CreateUsers(ctx context.Context, store *accounts.Store, domain, prefix, password string, n, iterations int) error {
	errs := make(chan error, n)
	sem := make(chan struct{}, 4)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			local := fmt.Sprintf("%s%d", prefix, i)
			err := store.Add(ctx, domain, local, password, iterations)
			if errors.Is(err, accounts.ErrExists) {
				err = store.Set(ctx, domain, local, password, iterations)
			}
			errs <- err
		}()
	}
	var all []error
	for range n {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// WaitLogin polls until user can log in (a new account reaches a node's cache through an
// etcd watch) or the deadline passes.
func WaitLogin(ctx context.Context, cfg ClientConfig, user, password string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := Login(ctx, &cfg, user, password, "", time.Now())
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: %s cannot log in: %w", user, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
