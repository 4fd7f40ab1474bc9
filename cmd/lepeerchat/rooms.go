package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"lepeerchat/store"
	"lepeerchat/store/boltstore"
	"lepeerchat/store/redisstore"
)

// openStore opens where the rooms live: by default the bbolt file in the
// data folder, with the in-process bus; with -redis, the Redis that this
// node shares with the others, which also carries their messages.
func openStore(ctx context.Context, cfg *config, logger *slog.Logger) (store.Store, store.Bus, error) {
	if cfg.redisURL == "" {
		st, err := boltstore.Open(filepath.Join(cfg.web.DataDir, "rooms.db"))
		if err != nil {
			return nil, nil, fmt.Errorf("open room store: %w", err)
		}
		return st, store.NewLocalBus(), nil
	}
	if cfg.signal.Node == "" || cfg.signal.Node == "main" {
		return nil, nil, errors.New(`-redis: give each node a name of its own with -node (not the default "main"), the same across its restarts`)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := redisstore.Open(ctx, cfg.redisURL, redisstore.Options{Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("open room store in redis: %w", err)
	}
	logger.Info("rooms are kept in redis, shared with the other nodes", "node", cfg.signal.Node)
	return st, st.Bus(), nil
}
