package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	flowsv1 "github.com/platica/flows-bridge/clients/go/gen/platica/flows/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// quoteFlow serves platica.flows.v1.FlowHandler with the quote flow.
type quoteFlow struct {
	flowsv1.UnimplementedFlowHandlerServer

	// work simulates slow work (a database, another service) before
	// answering; 0 in production. It shows how to honour the deadline: a
	// reply after it is discarded by the bridge, so do not start work that
	// cannot finish in time.
	work time.Duration
	log  *slog.Logger
}

func (f *quoteFlow) Exchange(ctx context.Context, req *flowsv1.ExchangeRequest) (*flowsv1.ExchangeResponse, error) {
	// The bridge sends what is left of its budget as the gRPC deadline.
	if deadline, ok := ctx.Deadline(); ok {
		if left := time.Until(deadline); left <= f.work {
			f.log.Warn("not enough time left for the work; giving up",
				"delivery", req.GetId(), "left", left, "work", f.work)
			return nil, status.Error(codes.DeadlineExceeded, "no time left")
		}
	}
	if err := ctx.Err(); err != nil { // cancelled by the caller
		return nil, status.FromContextError(err).Err()
	}
	if f.work > 0 {
		timer := time.NewTimer(f.work)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	reply, err := answer(req)
	if errors.Is(err, errNoStep) {
		f.log.Warn(err.Error(), "delivery", req.GetId())
		return nil, status.Error(codes.InvalidArgument, err.Error())
	} else if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	// Ids and names only: payloads and req.Client hold personal data.
	f.log.Info("exchange", "delivery", req.GetId(),
		"action", req.GetFlowExchange().GetActionName(),
		"screen", req.GetFlowExchange().GetScreen(),
		"reply", reply.GetScreen())
	return reply, nil
}

// server is the gRPC server: the FlowHandler, grpc.health.v1 and server
// reflection (grpc.reflection.v1 and v1alpha, so old and new grpcurl work).
type server struct {
	grpc   *grpc.Server
	health *health.Server
}

func newServer(flow flowsv1.FlowHandlerServer, opts ...grpc.ServerOption) *server {
	s := &server{grpc: grpc.NewServer(opts...), health: health.NewServer()}
	flowsv1.RegisterFlowHandlerServer(s.grpc, flow)
	// health.NewServer reports "" (the whole server) as SERVING already.
	s.health.SetServingStatus(flowsv1.FlowHandler_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc) // v1 and v1alpha
	return s
}

// serve accepts connections on lis until stop; it returns nil after stop.
func (s *server) serve(lis net.Listener) error {
	return s.grpc.Serve(lis)
}

// stop turns health NOT_SERVING (for "" and every service), stops accepting
// calls and waits up to grace for the calls in flight, then closes what is
// left.
func (s *server) stop(grace time.Duration) {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.grpc.Stop()
		<-done
	}
}
