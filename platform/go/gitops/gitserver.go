package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fluxcd/gitkit"
)

// gitServer serves the bare repositories under --dir over Git's smart HTTP protocol (gitkit, which
// runs git's own upload-pack and receive-pack), on 127.0.0.1. A push to <name>.git creates the
// repository; --post-receive installs that script as every repository's post-receive hook (the
// learner's pipeline runs on push). With --credentials FILE ("user:password" on one line, mode
// 0600) pushes and fetches need HTTP basic authentication.
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
	config := gitkit.Config{Dir: *dir, AutoCreate: true}
	if *hook != "" {
		script, err := os.ReadFile(*hook)
		if err != nil {
			return fmt.Errorf("--post-receive: %w", err)
		}
		config.AutoHooks = true
		config.Hooks = &gitkit.HookScripts{PostReceive: string(script)}
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	if err := config.Setup(); err != nil {
		return fmt.Errorf("cannot set up %s: %w", *dir, err)
	}
	server := gitkit.New(config)
	if *credentials != "" {
		user, password, err := readCredentials(*credentials)
		if err != nil {
			return err
		}
		config.Auth = true
		server = gitkit.New(config)
		server.AuthFunc = func(c gitkit.Credential, _ *gitkit.Request) (bool, error) {
			return c.Username == user && c.Password == password, nil
		}
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("serving %s on http://%s\n", *dir, listener.Addr())
	httpServer := &http.Server{Handler: server, ReadHeaderTimeout: 10 * time.Second}
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
