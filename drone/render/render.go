// Package render is the drone's confd: it keeps the app's config files
// rendered from the node's /self view of the cluster metadata. Pilot
// delivers the app's confd files (conf.d/*.toml, templates/*) with
// Configure; they are kept on disk so a restarted drone resumes rendering,
// and an image's own /etc/confd is used when nothing was delivered. Files
// are rendered with the functions of Hangar's confd (internal/confdfuncs),
// from the Renderer's own etcd watch loop, so that Close can stop it, and
// written by
// the Renderer itself: every dest is checked (internal/confdres) and
// written inside the root dir through an os.Root, so neither a dest nor a
// symlink in the instance leads the write outside it, and with exactly the
// mode the resource gives.
//
// Pilot also delivers the cluster's metadata key with Configure; it is kept
// (DataDir/metadata.key, 0600) and given to the view, which opens the
// sealed password values templates read.
package render

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hangarhq/hangar/drone/metaview"
	"github.com/hangarhq/hangar/internal/atomicfile"
	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/internal/secretbox"
)

const defaultSettle = 100 * time.Millisecond

// keyFile is the metadata key's file under DataDir.
const keyFile = "metadata.key"

// Config describes a Renderer.
type Config struct {
	// DataDir holds the delivered files, under DataDir/confd, and the
	// metadata key.
	DataDir string
	// RootDir, when set, is the instance's filesystem root: template
	// destinations are placed under it, and nothing is written outside it.
	RootDir string
	// BakedDir is a confd dir baked into the image (with conf.d/ and
	// templates/), used while no files were delivered. Empty means none.
	BakedDir string
	// View is read for rendering; the renderer runs it (View.Run) for its
	// lifetime and sets its metadata key.
	View *metaview.View
	// Settle is the least time between two renders of the watch loop: a
	// change after a quiet spell is rendered at once, and a burst of
	// changes costs at most two renders (default 100ms).
	Settle time.Duration
	Logger *slog.Logger
	// OnRendered, when set, is told after every render the metadata
	// revision rendered (the reload commands of changed files have run)
	// and what failed, if anything. It is called with the renderer's lock
	// held and must not block.
	OnRendered func(revision int64, err error)
	// RunHook, when set, runs check_cmd and reload_cmd instead of
	// /bin/sh: the sim provider's fake executor plays them, as it plays
	// the lifecycle commands of its thousands of in-process drones.
	RunHook func(ctx context.Context, cmdline string) error
}

// Renderer keeps one node's config files rendered.
type Renderer struct {
	cfg       Config
	log       *slog.Logger
	delivered string // DataDir/confd
	baked     string // DataDir/confd-baked: a checked copy of BakedDir
	keyPath   string // DataDir/metadata.key

	mu     sync.Mutex // serialises renders and changes of active
	active string     // the confd dir being rendered; "" before any
	// current is the revision the active files were last rendered at,
	// well or not: the loop skips a render that would repeat it (a failed
	// one is tried again on the next change or delivery).
	current int64

	// life ends at Close: it stops the watch loop and a check_cmd or
	// reload_cmd still running.
	life   context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the watch loop has ended
	viewed chan struct{} // closed when the view's feed has ended
}

// New resumes rendering what was delivered before (or the image's baked
// templates) and starts the watch loop, which renders once at start and
// again after every change of the cluster's metadata until ctx ends or
// Close is called. Render failures there are logged, not fatal: a later
// metadata change or delivery may fix them.
func New(ctx context.Context, cfg Config) (*Renderer, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("render: DataDir is required")
	}
	if cfg.View == nil {
		return nil, errors.New("render: View is required")
	}
	if cfg.Settle <= 0 {
		cfg.Settle = defaultSettle
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Renderer{
		cfg:       cfg,
		log:       cfg.Logger,
		delivered: filepath.Join(cfg.DataDir, "confd"),
		baked:     filepath.Join(cfg.DataDir, "confd-baked"),
		keyPath:   filepath.Join(cfg.DataDir, keyFile),
		done:      make(chan struct{}),
		viewed:    make(chan struct{}),
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("render: create %s: %w", cfg.DataDir, err)
	}
	if err := r.loadKey(); err != nil {
		// Values that need the key fail to render, naming themselves; the
		// next delivery brings the key again.
		r.log.Error("metadata key not loaded", "err", err)
	}
	recoverInstall(r.delivered)
	switch {
	case isDir(filepath.Join(r.delivered, "conf.d")):
		r.active = r.delivered
		r.log.Info("resuming delivered confd templates", "dir", r.delivered)
	case cfg.BakedDir != "" && isDir(filepath.Join(cfg.BakedDir, "conf.d")):
		if err := r.stageBaked(); err != nil {
			// The drone must still run commands and accept a delivery.
			r.log.Error("baked-in confd templates not used", "err", err)
		}
	}
	r.life, r.cancel = context.WithCancel(ctx)
	go func() {
		defer close(r.viewed)
		_ = cfg.View.Run(r.life) // it ends only with life
	}()
	go r.loop(r.life)
	return r, nil
}

// stageBaked checks and copies the image's confd dir: on the local runtime
// it lies inside the instance, where the app's commands could change it
// while it is rendered.
func (r *Renderer) stageBaked() error {
	files, err := collect(r.cfg.BakedDir)
	if err != nil {
		return fmt.Errorf("render: baked templates: %w", err)
	}
	prepared, err := prepare(files)
	if err != nil {
		return fmt.Errorf("render: baked templates in %s: %w", r.cfg.BakedDir, err)
	}
	if err := install(r.baked, prepared); err != nil {
		return fmt.Errorf("render: stage baked templates: %w", err)
	}
	r.active = r.baked
	r.log.Info("using baked-in confd templates", "dir", r.cfg.BakedDir)
	return nil
}

// loadKey gives the view the metadata key kept by an earlier Configure.
func (r *Renderer) loadKey() error {
	key, err := os.ReadFile(r.keyPath)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("render: read metadata key: %w", err)
	}
	if err := r.cfg.View.SetMetadataKey(key); err != nil {
		return fmt.Errorf("render: metadata key in %s: %w", r.keyPath, err)
	}
	return nil
}

// Configure replaces the rendered set with files (paths "conf.d/x.toml",
// "templates/x.tmpl"), keeps them for later restarts, and renders them
// once. metadataKey, when given, is the cluster's key for sealed metadata
// values: it is kept (0600) and used from then on. A delivery may carry
// only the key (no files), for templates baked into the image: the current
// set is then rendered again with it. The error names the file or template
// that failed; the files stay installed and are rendered again on the next
// metadata change.
func (r *Renderer) Configure(ctx context.Context, files map[string][]byte, metadataKey []byte) error {
	if len(metadataKey) > 0 && len(metadataKey) != secretbox.KeySize {
		return fmt.Errorf("configure renderer: metadata_key: %d bytes; it must be %d bytes", len(metadataKey), secretbox.KeySize)
	}
	var prepared map[string][]byte
	if len(files) > 0 || len(metadataKey) == 0 {
		var err error
		if prepared, err = prepare(files); err != nil {
			return fmt.Errorf("configure renderer: %w", err)
		}
	}
	// Pilot delivers after it wrote the metadata: render what it wrote.
	if err := r.cfg.View.Sync(ctx); err != nil {
		return fmt.Errorf("configure renderer: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(metadataKey) > 0 {
		if err := atomicfile.Write(r.keyPath, metadataKey, 0o600); err != nil {
			return fmt.Errorf("configure renderer: keep metadata key: %w", err)
		}
		if err := r.cfg.View.SetMetadataKey(metadataKey); err != nil {
			return fmt.Errorf("configure renderer: %w", err)
		}
	}
	if prepared != nil {
		if err := install(r.delivered, prepared); err != nil {
			return fmt.Errorf("configure renderer: %w", err)
		}
		r.active = r.delivered
	}
	if _, err := r.renderLocked(ctx); err != nil {
		return fmt.Errorf("configure renderer: %w", err)
	}
	return nil
}

// Render renders the current set now, from the metadata the view has seen
// (Configure, which pilot's delivery calls, first brings the view up to
// etcd).
func (r *Renderer) Render(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.renderLocked(ctx)
	return err
}

// renderLocked renders every template resource of the active dir and
// returns the lowest etcd revision it read: the render reflects every change
// up to it. Each resource is processed on its own so that a failure names
// it and does not stop the others.
func (r *Renderer) renderLocked(ctx context.Context) (int64, error) {
	rev, err := r.renderFiles(ctx)
	r.current = rev
	if rev == 0 && err == nil {
		// Nothing to render: the node is as current as its view.
		if v, verr := r.cfg.View.Revision(ctx); verr == nil {
			rev = v
		}
	}
	if r.cfg.OnRendered != nil && rev > 0 {
		r.cfg.OnRendered(rev, err)
	}
	return rev, err
}

func (r *Renderer) renderFiles(ctx context.Context) (int64, error) {
	if r.active == "" {
		return 0, nil
	}
	tomls, err := resources(r.active)
	if err != nil {
		return 0, err
	}
	t, closeTarget, err := r.openTarget()
	if err != nil {
		return 0, err
	}
	defer closeTarget()
	sc := r.cfg.View.StoreClient(ctx)
	templates := filepath.Join(r.active, "templates")
	var errs []error
	for _, file := range tomls {
		rel, _ := filepath.Rel(r.active, file)
		res, err := readResource(file, rel)
		if err != nil {
			errs = append(errs, fmt.Errorf("template resource %w", err))
			continue
		}
		out, err := renderTemplate(res, templates, sc)
		if err == nil {
			err = r.place(ctx, t, res, out)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("render %s (template %s): %w", rel, res.Src, err))
		}
	}
	return sc.Revision(), errors.Join(errs...)
}

// renderAndLog renders unless the files were already rendered at revision
// want or later (by a Configure, say).
func (r *Renderer) renderAndLog(ctx context.Context, want int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if want > 0 && r.current >= want {
		return r.current
	}
	rev, err := r.renderLocked(ctx)
	if err != nil && ctx.Err() == nil {
		r.log.Error("render confd templates", "err", err)
	}
	return rev
}

// loop re-renders after every change of the cluster's metadata.
func (r *Renderer) loop(ctx context.Context) {
	defer close(r.done)
	bo := backoff.New(200*time.Millisecond, 15*time.Second)
	var rev int64
	var last time.Time // the loop's last render
	synced := false
	for {
		if !synced {
			// Read the revision before rendering, so a change made while
			// rendering is still seen by the watch below.
			cur, err := r.cfg.View.Revision(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Warn("read metadata revision", "err", err)
				if backoff.Sleep(ctx, bo.Next()) != nil {
					return
				}
				continue
			}
			rev = max(cur, r.renderAndLog(ctx, cur))
			last = time.Now()
			synced = true
		}
		next, err := r.cfg.View.WaitChange(ctx, rev)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.log.Warn("watch metadata", "err", err)
			synced = false
			if backoff.Sleep(ctx, bo.Next()) != nil {
				return
			}
			continue
		}
		bo.Reset()
		if backoff.Sleep(ctx, r.cfg.Settle-time.Since(last)) != nil {
			return
		}
		rev = max(next, r.renderAndLog(ctx, next))
		last = time.Now()
	}
}

// Close stops the watch loop and waits for it; a check_cmd or reload_cmd
// still running is killed (its process group).
func (r *Renderer) Close() {
	r.cancel()
	<-r.done
	<-r.viewed
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
