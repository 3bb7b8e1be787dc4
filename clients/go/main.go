// Command flow-handler is the reference quote flow as a Platica FlowHandler,
// in Go (grpc-go).
//
//	go generate ./... && go run . [--host 127.0.0.1] [--port 50051]
//
// flows-bridge (the sidecar) receives Platica's signed WhatsApp Flows webhooks
// and calls platica.flows.v1.FlowHandler/Exchange here; the reply goes back to
// Platica as JSON. The flow is the same in every language in clients/ (see
// answer in quote.go).
//
// Also served: grpc.health.v1 (SERVING for "" and the FlowHandler; the
// bridge's /readyz asks it) and server reflection (v1 and v1alpha). It prints
// `listening on HOST:PORT` once it serves; SIGTERM or SIGINT stops it
// gracefully (health turns NOT_SERVING, calls in flight get --grace) and it
// exits 0.
package main

//go:generate sh generate.sh

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its arguments and outputs; it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("flow-handler", flag.ContinueOnError)
	flags.SetOutput(stderr)
	host := flags.String("host", "127.0.0.1", "address to bind (0.0.0.0 or :: to accept other hosts)")
	port := flags.Int("port", 50051, "port to bind, 0 picks a free one (default: $PORT, else 50051)")
	grace := flags.Duration("grace", 5*time.Second, "time calls in flight get on SIGTERM/SIGINT")
	work := flags.Duration("work", 0, "simulated work per call, to try the deadline and the bridge's fallback")
	logLevel := flags.String("log-level", "info", "debug, info, warn or error (default: $LOG_LEVEL, else info)")
	if env, ok := os.LookupEnv("PORT"); ok && env != "" {
		if err := flags.Set("port", env); err != nil {
			fmt.Fprintf(stderr, "invalid PORT %q: %v\n", env, err)
			return 2
		}
	}
	if env := os.Getenv("LOG_LEVEL"); env != "" {
		_ = flags.Set("log-level", env)
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "invalid log level %q: %v\n", *logLevel, err)
		return 2
	}
	if *port < 0 || *port > 65535 {
		fmt.Fprintf(stderr, "invalid port %d\n", *port)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stopSignals()

	lis, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		log.Error("cannot listen", "err", err)
		return 1
	}
	srv := newServer(&quoteFlow{work: *work, log: log})
	served := make(chan error, 1)
	go func() { served <- srv.serve(lis) }()

	bound := lis.Addr().(*net.TCPAddr).Port
	// os.Stdout is unbuffered: the line is out once Fprintf returns.
	fmt.Fprintf(stdout, "listening on %s\n", net.JoinHostPort(*host, strconv.Itoa(bound)))

	select {
	case <-ctx.Done():
		log.Info("stopping", "grace", *grace)
		srv.stop(*grace)
		<-served
		log.Info("stopped")
		return 0
	case err := <-served:
		log.Error("serve failed", "err", err)
		return 1
	}
}
