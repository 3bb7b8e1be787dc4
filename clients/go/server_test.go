package main

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	flowsv1 "github.com/platica/flows-bridge/clients/go/gen/platica/flows/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
)

const flowHandlerService = "platica.flows.v1.FlowHandler"

func TestHealthServing(t *testing.T) {
	_, conn := startServer(t, nil)
	client := healthpb.NewHealthClient(conn)
	for _, service := range []string{"", flowHandlerService} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		cancel()
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, want SERVING", service, resp.GetStatus())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("Check(unknown service): %v, want NotFound", err)
	}
}

func TestHealthNotServingWhileStopping(t *testing.T) {
	// A call in flight keeps the server draining while the watches report.
	release := make(chan struct{})
	srv, conn := startServer(t, nil, grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if info.FullMethod == flowsv1.FlowHandler_Exchange_FullMethodName {
				<-release
			}
			return handler(ctx, req)
		}))
	watchCtx, stopWatching := context.WithTimeout(context.Background(), 10*time.Second)
	defer stopWatching()
	var watches []healthpb.Health_WatchClient
	for _, service := range []string{"", flowHandlerService} {
		watch, err := healthpb.NewHealthClient(conn).Watch(watchCtx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatal(err)
		}
		first, err := watch.Recv()
		if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Watch(%q) first: %v %v, want SERVING", service, first.GetStatus(), err)
		}
		watches = append(watches, watch)
	}

	inFlight := make(chan error, 1)
	req := request(t, flowsv1.Action_ACTION_INIT, nil, nil)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := flowsv1.NewFlowHandlerClient(conn).Exchange(ctx, req)
		inFlight <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the call reach the interceptor
	stopped := make(chan struct{})
	go func() {
		srv.stop(5 * time.Second)
		close(stopped)
	}()

	for _, watch := range watches {
		next, err := watch.Recv()
		if err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("Watch while stopping: %v %v, want NOT_SERVING", next.GetStatus(), err)
		}
	}
	stopWatching() // graceful stop waits for every call, watches included
	close(release)
	if err := <-inFlight; err != nil {
		t.Errorf("call in flight during graceful stop: %v", err)
	}
	select {
	case <-stopped:
	case <-time.After(4 * time.Second):
		t.Error("graceful stop did not finish once the calls were done")
	}
}

func TestReflectionListsServices(t *testing.T) {
	_, conn := startServer(t, nil)
	want := []string{ // sorted
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
		flowHandlerService,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	t.Run("v1", func(t *testing.T) {
		stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		list := &reflectionv1.ServerReflectionRequest{
			MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{},
		}
		if err := stream.Send(list); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			got = append(got, s.GetName())
		}
		checkServices(t, got, want)

		// The descriptors are served too (what grpcurl describe and call use).
		symbol := &reflectionv1.ServerReflectionRequest{
			MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{
				FileContainingSymbol: flowHandlerService,
			},
		}
		if err := stream.Send(symbol); err != nil {
			t.Fatal(err)
		}
		resp, err = stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()); n == 0 {
			t.Errorf("no file descriptor for %s: %v", flowHandlerService, resp.GetErrorResponse())
		}
	})

	t.Run("v1alpha", func(t *testing.T) {
		stream, err := reflectionv1alpha.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = stream.Send(&reflectionv1alpha.ServerReflectionRequest{
			MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{},
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			got = append(got, s.GetName())
		}
		checkServices(t, got, want)
	})
}

func checkServices(t *testing.T, got, want []string) {
	t.Helper()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}
}

// statusRecorder is a server interceptor that records the status the
// handler returned, as the server sent it (not as the client's deadline saw it).
type statusRecorder struct {
	mu    sync.Mutex
	codes []codes.Code
}

func (r *statusRecorder) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	r.mu.Lock()
	r.codes = append(r.codes, status.Code(err))
	r.mu.Unlock()
	return resp, err
}

func (r *statusRecorder) last(t *testing.T) codes.Code {
	t.Helper()
	// The server may record just after the client got its answer.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		n := len(r.codes)
		r.mu.Unlock()
		if n > 0 {
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.codes) == 0 {
		t.Fatal("the server recorded no call")
	}
	return r.codes[len(r.codes)-1]
}

func TestDeadline(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)

	t.Run("already past", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
		defer cancel()
		flow := &quoteFlow{log: quiet}
		_, err := flow.Exchange(ctx, request(t, flowsv1.Action_ACTION_INIT, nil, nil))
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("Exchange past its deadline: %v, want DeadlineExceeded", err)
		}
	})

	t.Run("too short for the work", func(t *testing.T) {
		recorder := &statusRecorder{}
		_, conn := startServer(t, &quoteFlow{work: 2 * time.Second}, grpc.UnaryInterceptor(recorder.intercept))
		conn.Connect() // connect first: the deadline below is for the call alone
		waitReady(t, conn)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := flowsv1.NewFlowHandlerClient(conn).Exchange(ctx, request(t, flowsv1.Action_ACTION_INIT, nil, nil))
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("client: %v, want DeadlineExceeded", err)
		}
		if got := recorder.last(t); got != codes.DeadlineExceeded {
			t.Errorf("server answered %v, want DeadlineExceeded", got)
		}
		if elapsed := time.Since(start); elapsed > 400*time.Millisecond {
			t.Errorf("gave up after %v; it should not start work it cannot finish", elapsed)
		}
	})

	t.Run("enough for the work", func(t *testing.T) {
		_, conn := startServer(t, &quoteFlow{work: 20 * time.Millisecond})
		reply, err := call(t, conn, request(t, flowsv1.Action_ACTION_INIT, nil, nil))
		if err != nil || reply.GetScreen() != "WELCOME" {
			t.Errorf("Exchange: %v %v, want WELCOME", reply.GetScreen(), err)
		}
	})
}

func waitReady(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for state := conn.GetState(); state != connectivity.Ready; state = conn.GetState() {
		if !conn.WaitForStateChange(ctx, state) {
			t.Fatalf("connection not ready: %v", state)
		}
	}
}
