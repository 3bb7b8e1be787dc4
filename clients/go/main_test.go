package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The test binary doubles as the command: with FLOW_HANDLER_RUN_MAIN=1 it
// runs main, so the tests below start the real process and signal it.
func TestMain(m *testing.M) {
	if os.Getenv("FLOW_HANDLER_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

type process struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	addr   string
}

var listening = regexp.MustCompile(`^listening on (127\.0\.0\.1:([0-9]+))\n$`)

// startMain runs the command with args and env, and waits for its
// `listening on` line.
func startMain(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "FLOW_HANDLER_RUN_MAIN=1", "PORT=", "LOG_LEVEL=warn"), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	p := &process{cmd: cmd, stdout: bufio.NewReader(stdout)}
	lines := make(chan string, 1)
	go func() {
		line, _ := p.stdout.ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		m := listening.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("first line %q, want `listening on 127.0.0.1:PORT`", line)
		}
		p.addr = m[1]
	case <-time.After(20 * time.Second):
		t.Fatal("no `listening on` line within 20s")
	}
	return p
}

// stop sends sig and checks that the process exits 0 having printed nothing
// more on stdout.
func (p *process) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	var rest []byte
	done := make(chan error, 1)
	go func() {
		rest, _ = io.ReadAll(p.stdout) // until the process exits
		done <- p.cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after %v: %v, want 0", sig, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after %v", sig)
	}
	if len(rest) > 0 {
		t.Errorf("stdout after the listening line: %q", rest)
	}
}

func checkServing(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: flowHandlerService})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of %s: %v %v, want SERVING", addr, resp.GetStatus(), err)
	}
}

func TestCommandStopsOnSIGTERM(t *testing.T) {
	p := startMain(t, nil, "--port", "0")
	checkServing(t, p.addr)
	p.stop(t, syscall.SIGTERM)
}

func TestCommandStopsOnSIGINT(t *testing.T) {
	p := startMain(t, nil, "--port=0")
	checkServing(t, p.addr)
	p.stop(t, syscall.SIGINT)
}

func TestCommandPortFromEnv(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	p := startMain(t, []string{"PORT=" + strconv.Itoa(port)})
	if want := "127.0.0.1:" + strconv.Itoa(port); p.addr != want {
		t.Errorf("listening on %s, want %s", p.addr, want)
	}
	checkServing(t, p.addr)
	p.stop(t, syscall.SIGTERM)
}

func TestCommandRejectsBadArguments(t *testing.T) {
	for name, c := range map[string]struct {
		env  []string
		args []string
	}{
		"bad PORT":      {env: []string{"PORT=http"}},
		"port too big":  {args: []string{"--port", "70000"}},
		"unknown flag":  {args: []string{"--nope"}},
		"bad log level": {args: []string{"--port", "0", "--log-level", "loud"}},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], c.args...)
			cmd.Env = append(append(os.Environ(), "FLOW_HANDLER_RUN_MAIN=1", "PORT="), c.env...)
			out, err := cmd.Output()
			if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 2 {
				t.Errorf("err = %v, want exit status 2", err)
			}
			if len(out) > 0 {
				t.Errorf("stdout: %q", out)
			}
		})
	}
}
