package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	flowsv1 "github.com/platica/flows-bridge/clients/go/gen/platica/flows/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// The shared conformance vectors (../../tests/vectors), sent over gRPC
// without the bridge: each delivery is reduced to the fields the quote flow
// reads, and a non-OK status stands for the bridge's default fallback reply.
// tests/interop/run.sh sends the same vectors through the real bridge.

const vectors = "../../tests/vectors"

type vectorCase struct {
	Name     string          `json:"name"`
	Delivery string          `json:"delivery"`
	Patch    json.RawMessage `json:"patch"`
	Expect   struct {
		Status int            `json:"status"`
		Body   map[string]any `json:"body"`
	} `json:"expect"`
}

var fallback = map[string]any{"data": map[string]any{"acknowledged": true}}

func TestVectors(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(vectors, "cases", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors in %s/cases (%v)", vectors, err)
	}
	_, conn := startServer(t, nil)
	for _, file := range files {
		var c vectorCase
		readJSON(t, file, &c)
		t.Run(c.Name, func(t *testing.T) {
			if c.Expect.Status != 200 {
				t.Skipf("expects HTTP %d from the bridge itself", c.Expect.Status)
			}
			var delivery any
			readJSON(t, filepath.Join(vectors, "deliveries", c.Delivery), &delivery)
			if len(c.Patch) > 0 {
				var patch any
				if err := json.Unmarshal(c.Patch, &patch); err != nil {
					t.Fatal(err)
				}
				delivery = mergePatch(delivery, patch)
			}
			var got map[string]any
			reply, err := call(t, conn, toRequest(t, delivery))
			switch status.Code(err) {
			case codes.OK:
				got = asJSON(reply)
			case codes.InvalidArgument:
				got = fallback
			default:
				t.Fatalf("Exchange: %v", err)
			}
			if !reflect.DeepEqual(got, c.Expect.Body) {
				t.Errorf("got  %v\nwant %v", got, c.Expect.Body)
			}
		})
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// mergePatch applies an RFC 7396 JSON merge patch.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for key, value := range p {
		if value == nil {
			delete(t, key)
		} else {
			t[key] = mergePatch(t[key], value)
		}
	}
	return t
}

// toRequest converts a webhook body as the bridge does, for the fields the
// quote flow reads: data.flowExchange's action, screen and payload.
func toRequest(t *testing.T, delivery any) *flowsv1.ExchangeRequest {
	t.Helper()
	body, _ := delivery.(map[string]any)
	data, _ := body["data"].(map[string]any)
	fx, _ := data["flowExchange"].(map[string]any)
	id, _ := body["id"].(string)
	eventName, _ := body["event"].(string)
	actionName, _ := fx["action"].(string)
	exchange := &flowsv1.FlowExchange{
		Action:     map[string]flowsv1.Action{"init": 1, "data_exchange": 2, "back": 3}[actionName],
		ActionName: actionName,
		Payload:    &structpb.Struct{},
	}
	if screen, ok := fx["screen"].(string); ok {
		exchange.Screen = &screen
	}
	if payload, ok := fx["payload"].(map[string]any); ok {
		p, err := structpb.NewStruct(payload)
		if err != nil {
			t.Fatal(err)
		}
		exchange.Payload = p
	}
	return &flowsv1.ExchangeRequest{Id: id, EventName: eventName, FlowExchange: exchange}
}
