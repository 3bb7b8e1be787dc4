package main

import (
	"context"
	"log/slog"
	"net"
	"reflect"
	"testing"
	"time"

	flowsv1 "github.com/platica/flows-bridge/clients/go/gen/platica/flows/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// startServer serves flow (the quote flow when nil) on 127.0.0.1:0 and returns
// the server and a client connection to it; both are closed at the end of the
// test.
func startServer(t *testing.T, flow *quoteFlow, opts ...grpc.ServerOption) (*server, *grpc.ClientConn) {
	t.Helper()
	if flow == nil {
		flow = &quoteFlow{}
	}
	if flow.log == nil {
		flow.log = slog.New(slog.DiscardHandler)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(flow, opts...)
	served := make(chan error, 1)
	go func() { served <- srv.serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.stop(time.Second)
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv, conn
}

func call(t *testing.T, conn *grpc.ClientConn, req *flowsv1.ExchangeRequest) (*flowsv1.ExchangeResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return flowsv1.NewFlowHandlerClient(conn).Exchange(ctx, req)
}

// asJSON is the reply as the bridge sends it to Platica: {"screen", "data"},
// each only when set, numbers as float64.
func asJSON(reply *flowsv1.ExchangeResponse) map[string]any {
	out := map[string]any{}
	if reply.GetScreen() != "" {
		out["screen"] = reply.GetScreen()
	}
	if reply.Data != nil {
		out["data"] = reply.Data.AsMap()
	}
	return out
}

func request(t *testing.T, action flowsv1.Action, screen *string, payload map[string]any) *flowsv1.ExchangeRequest {
	t.Helper()
	p, err := structpb.NewStruct(payload)
	if err != nil {
		t.Fatal(err)
	}
	return &flowsv1.ExchangeRequest{
		Id:        "d7c1f3a0-0000-4000-8000-000000000001",
		Event:     flowsv1.Event_EVENT_SCREEN_ADVANCE,
		EventName: "whatsapp.flows.screen_advance",
		FlowExchange: &flowsv1.FlowExchange{
			Action:     action,
			ActionName: "data_exchange",
			Screen:     screen,
			Payload:    p,
		},
	}
}

func ptr(s string) *string { return &s }

var productList = []any{
	map[string]any{"id": "p1", "title": "Plan Básico"},
	map[string]any{"id": "p2", "title": "Plan Premium"},
}

func welcomeWith(errorMessage string) map[string]any {
	data := map[string]any{"products": productList}
	if errorMessage != "" {
		data["error_message"] = errorMessage
	}
	return map[string]any{"screen": "WELCOME", "data": data}
}

func payment(id, title string, amount float64) map[string]any {
	return map[string]any{"screen": "PAYMENT", "data": map[string]any{
		"product_id": id, "product_title": title, "amount_mxn": amount,
	}}
}

func TestFlow(t *testing.T) {
	_, conn := startServer(t, nil)
	const (
		init_    = flowsv1.Action_ACTION_INIT
		back     = flowsv1.Action_ACTION_BACK
		exchange = flowsv1.Action_ACTION_DATA_EXCHANGE
	)
	cases := []struct {
		name    string
		action  flowsv1.Action
		screen  *string
		payload map[string]any
		want    map[string]any
	}{
		{"init lists products", init_, nil, nil, welcomeWith("")},
		{"init ignores payload", init_, nil, map[string]any{"selected_product": "p1"}, welcomeWith("")},
		{"back from payment", back, ptr("PAYMENT"), nil, welcomeWith("")},
		{"back from welcome", back, ptr("WELCOME"), nil, welcomeWith("")},
		{"back without screen", back, nil, nil, welcomeWith("")},

		{"p1", exchange, ptr("WELCOME"), map[string]any{"selected_product": "p1"}, payment("p1", "Plan Básico", 199)},
		{"p2", exchange, ptr("WELCOME"), map[string]any{"selected_product": "p2"}, payment("p2", "Plan Premium", 499)},
		{"p2 with email", exchange, ptr("WELCOME"),
			map[string]any{"selected_product": "p2", "email": "juan@empresa.com"}, payment("p2", "Plan Premium", 499)},
		{"p1 with postal code", exchange, ptr("WELCOME"),
			map[string]any{"selected_product": "p1", "postal_code": "06600"}, payment("p1", "Plan Básico", 199)},
		{"all fields and extras", exchange, ptr("WELCOME"),
			map[string]any{"selected_product": "p1", "email": "a@b.c", "postal_code": "00000", "extra": 1},
			payment("p1", "Plan Básico", 199)},
		{"non-string email and postal code are ignored", exchange, ptr("WELCOME"),
			map[string]any{"selected_product": "p2", "email": 5, "postal_code": 6600}, payment("p2", "Plan Premium", 499)},

		{"no product", exchange, ptr("WELCOME"), nil, welcomeWith(errorProduct)},
		{"unknown product", exchange, ptr("WELCOME"), map[string]any{"selected_product": "p9"}, welcomeWith(errorProduct)},
		{"empty product", exchange, ptr("WELCOME"), map[string]any{"selected_product": ""}, welcomeWith(errorProduct)},
		{"product ids are case-sensitive", exchange, ptr("WELCOME"), map[string]any{"selected_product": "P1"}, welcomeWith(errorProduct)},
		{"a number is not a product", exchange, ptr("WELCOME"), map[string]any{"selected_product": 1}, welcomeWith(errorProduct)},
		{"null product", exchange, ptr("WELCOME"), map[string]any{"selected_product": nil}, welcomeWith(errorProduct)},
		{"product before email", exchange, ptr("WELCOME"),
			map[string]any{"selected_product": "p9", "email": "juan@"}, welcomeWith(errorProduct)},
		{"bad email", exchange, ptr("WELCOME"),
			map[string]any{"selected_product": "p1", "email": "juan@"}, welcomeWith(errorEmail)},
		{"email with a space", exchange, ptr("WELCOME"),
			map[string]any{"selected_product": "p1", "email": "juan empresa.com"}, welcomeWith(errorEmail)},
		{"email before postal code", exchange, ptr("WELCOME"),
			map[string]any{"selected_product": "p1", "email": "juan@", "postal_code": "1"}, welcomeWith(errorEmail)},
		{"short postal code", exchange, ptr("WELCOME"),
			map[string]any{"selected_product": "p1", "postal_code": "0600"}, welcomeWith(errorPostalCode)},
		{"postal code with a letter", exchange, ptr("WELCOME"),
			map[string]any{"selected_product": "p1", "postal_code": "06G00"}, welcomeWith(errorPostalCode)},

		{"payment confirms", exchange, ptr("PAYMENT"), map[string]any{"anything": "x"},
			map[string]any{"screen": "SUCCESS", "data": map[string]any{"acknowledged": true}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reply, err := call(t, conn, request(t, c.action, c.screen, c.payload))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if got := asJSON(reply); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %v\nwant %v", got, c.want)
			}
		})
	}
}

func TestAmountsAreWholeNumbers(t *testing.T) {
	_, conn := startServer(t, nil)
	reply, err := call(t, conn, request(t, flowsv1.Action_ACTION_DATA_EXCHANGE, ptr("WELCOME"),
		map[string]any{"selected_product": "p2"}))
	if err != nil {
		t.Fatal(err)
	}
	// A Struct number is a double; the bridge renders a whole one as 499.
	if got := reply.GetData().GetFields()["amount_mxn"].GetNumberValue(); got != 499 {
		t.Errorf("amount_mxn = %v, want 499", got)
	}
}

func TestNoStepIsInvalidArgument(t *testing.T) {
	_, conn := startServer(t, nil)
	exchange := flowsv1.Action_ACTION_DATA_EXCHANGE
	cases := map[string]*flowsv1.ExchangeRequest{
		"unknown screen":   request(t, exchange, ptr("SUCCESS"), nil),
		"no screen":        request(t, exchange, nil, nil),
		"empty screen":     request(t, exchange, ptr(""), nil),
		"lowercase screen": request(t, exchange, ptr("welcome"), nil),
		"unknown action": request(t, flowsv1.Action_ACTION_UNSPECIFIED, ptr("WELCOME"),
			map[string]any{"selected_product": "p1"}),
		"no flow_exchange": {Id: "no-exchange"},
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := call(t, conn, req)
			if got := status.Code(err); got != codes.InvalidArgument {
				t.Errorf("code = %v (%v), want InvalidArgument", got, err)
			}
		})
	}
}

func TestValidEmail(t *testing.T) {
	valid := []string{
		"juan@empresa.com", "a@b.c", "a.b+c@sub.example.mx", "ñ@dominio.mx",
		"a@b@c.com",              // split at the first @: "b@c.com" has two parts
		"juan\ufeff@empresa.com", // U+FEFF is not White_Space
		"juan\u200b@empresa.com", // nor is U+200B
		"juan\x1c@empresa.com",   // nor U+001C (unlike Python's str.isspace)
		"juan@@empresa.com",      // as the reference: the domain "@empresa.com" has two parts
	}
	invalid := []string{
		"", "juan", "juan@", "@empresa.com", "juan@empresa", "juan@empresa.", "juan@.com",
		"juan@empresa..com", "juan @empresa.com", "juan@empresa.com ", "juan\t@empresa.com",
	}
	// Every Unicode White_Space character, as Rust's char::is_whitespace.
	for _, r := range []rune{'\t', '\n', '\v', '\f', '\r', ' ', 0x85, 0xa0, 0x1680,
		0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
		0x2028, 0x2029, 0x202f, 0x205f, 0x3000} {
		invalid = append(invalid, "juan"+string(r)+"@empresa.com")
	}
	for _, email := range valid {
		if !validEmail(email) {
			t.Errorf("validEmail(%q) = false, want true", email)
		}
	}
	for _, email := range invalid {
		if validEmail(email) {
			t.Errorf("validEmail(%q) = true, want false", email)
		}
	}
}

func TestValidPostalCode(t *testing.T) {
	for code, want := range map[string]bool{
		"06600": true, "00000": true, "99999": true,
		"": false, "0660": false, "066000": false, "06G00": false, " 6600": false,
		"０６６００": false, // fullwidth digits
		"٠٦٦٠٠": false, // Arabic-Indic digits
		"0660١": false,
	} {
		if got := validPostalCode(code); got != want {
			t.Errorf("validPostalCode(%q) = %v, want %v", code, got, want)
		}
	}
}
