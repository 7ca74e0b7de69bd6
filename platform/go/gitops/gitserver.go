package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fluxcd/gitkit"
)

// repoPath is what the server answers: /<name>/info/refs, /<name>/git-upload-pack or
// /<name>/git-receive-pack, where a name is a repository (app.git) or an owner and a repository
// (team/app.git: tools that read an owner from the URL, such as semantic-release, need one);
// nothing else reaches git.
var repoPath = regexp.MustCompile(
	`^/((?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*)/(info/refs|git-upload-pack|git-receive-pack)$`)

// gitServer serves the bare repositories under --dir over Git's smart HTTP protocol (gitkit, which
// runs git's own upload-pack and receive-pack), on 127.0.0.1. A push to <name>.git creates the
// repository, its HEAD on main (a fetch of a missing one is 404); --post-receive installs that script as every
// repository's post-receive hook (the learner's pipeline runs on push). With --credentials FILE
// ("user:password" on one line, mode 0600) pushes and fetches need HTTP basic authentication.
func gitServer(args []string) error {
	flags := flag.NewFlagSet("git-server", flag.ContinueOnError)
	dir := flags.String("dir", "", "directory of bare repositories (required)")
	addr := flags.String("addr", "127.0.0.1:0", "address to listen on (127.0.0.1 only)")
	hook := flags.String("post-receive", "", "script installed as each repository's post-receive hook")
	credentials := flags.String("credentials", "", "file holding user:password for HTTP basic auth")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir is required (the directory of bare repositories)")
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || host != "127.0.0.1" {
		return fmt.Errorf("--addr %q: the Git server binds to 127.0.0.1 only (127.0.0.1:PORT)", *addr)
	}
	root, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	handler := &gitHandler{root: root, gitkit: gitkit.New(gitkit.Config{Dir: root})}
	if *hook != "" {
		if handler.hook, err = os.ReadFile(*hook); err != nil {
			return fmt.Errorf("--post-receive: %w", err)
		}
	}
	if *credentials != "" {
		if handler.user, handler.password, err = readCredentials(*credentials); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	if err := handler.installHooks(); err != nil {
		return fmt.Errorf("cannot install the post-receive hook under %s: %w", root, err)
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("serving %s on http://%s\n", root, listener.Addr())
	httpServer := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpServer.Shutdown(shutdown)
	}()
	if err := httpServer.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// gitHandler checks a request before gitkit serves it: the path names one repository under the
// root, the Host is this machine (no DNS rebinding from a browser), the credentials match, and
// only a push creates a repository.
type gitHandler struct {
	root           string
	gitkit         http.Handler
	hook           []byte
	user, password string
	creating       sync.Mutex
}

func (h *gitHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	match := repoPath.FindStringSubmatch(r.URL.Path)
	if match == nil || strings.Contains(match[1], "..") || strings.Contains(match[1], ".git/") {
		http.Error(w, "not a repository path: use http://127.0.0.1:PORT/NAME.git or /OWNER/NAME.git", http.StatusNotFound)
		return
	}
	if host, _, err := net.SplitHostPort(r.Host); err != nil || (host != "127.0.0.1" && host != "localhost") {
		http.Error(w, "Host must be 127.0.0.1 or localhost", http.StatusForbidden)
		return
	}
	if h.user != "" {
		user, password, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(h.user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(password), []byte(h.password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="opslab"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
	}
	push := match[2] == "git-receive-pack" || r.URL.Query().Get("service") == "git-receive-pack"
	if push {
		if err := h.create(match[1]); err != nil {
			http.Error(w, "cannot create the repository", http.StatusInternalServerError)
			fmt.Fprintf(os.Stderr, "git-server: create %s: %v\n", match[1], err)
			return
		}
	}
	h.gitkit.ServeHTTP(w, r)
}

// create makes a bare repository with the hook, unless it exists.
func (h *gitHandler) create(name string) error {
	h.creating.Lock()
	defer h.creating.Unlock()
	path := filepath.Join(h.root, name)
	if _, err := os.Stat(filepath.Join(path, "objects")); err == nil {
		return nil
	}
	// HEAD names main, so a plain clone of a repository pushed to main checks it out.
	if out, err := exec.Command("git", "init", "-q", "--bare", "--initial-branch=main", path).CombinedOutput(); err != nil {
		return fmt.Errorf("git init: %v: %s", err, out)
	}
	return h.installHook(path)
}

// installHooks puts the hook into every repository already under the root (NAME or OWNER/NAME).
func (h *gitHandler) installHooks() error {
	for _, pattern := range []string{"*", "*/*"} {
		found, err := filepath.Glob(filepath.Join(h.root, pattern, "objects"))
		if err != nil {
			return err
		}
		for _, objects := range found {
			if err := h.installHook(filepath.Dir(objects)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *gitHandler) installHook(repository string) error {
	if h.hook == nil {
		return nil
	}
	hooks := filepath.Join(repository, "hooks")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		return err
	}
	script := filepath.Join(hooks, "post-receive")
	if err := os.WriteFile(script, h.hook, 0o755); err != nil {
		return err
	}
	return os.Chmod(script, 0o755)
}

func readCredentials(path string) (string, string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", "", fmt.Errorf("--credentials: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return "", "", fmt.Errorf("--credentials %s is readable by others: chmod 600 it", path)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	user, password, ok := strings.Cut(strings.TrimSpace(string(text)), ":")
	if !ok || user == "" || password == "" {
		return "", "", fmt.Errorf("--credentials %s: write one line, user:password", path)
	}
	return user, password, nil
}
