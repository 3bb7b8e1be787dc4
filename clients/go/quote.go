package main

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	flowsv1 "github.com/platica/flows-bridge/clients/go/gen/platica/flows/v1"
	"google.golang.org/protobuf/types/known/structpb"
)

// product is one plan the quote flow offers.
type product struct {
	id     string
	title  string
	amount float64 // MXN; a whole number, rendered by the bridge as 199, not 199.0
}

var products = []product{
	{id: "p1", title: "Plan Básico", amount: 199},
	{id: "p2", title: "Plan Premium", amount: 499},
}

// The error messages shown on WELCOME (data.error_message).
const (
	errorProduct    = "Selecciona un producto válido"
	errorEmail      = "El correo electrónico no es válido"
	errorPostalCode = "El código postal no es válido"
)

// errNoStep is wrapped by answer when the quote flow has no step for a
// request; the gRPC handler turns it into INVALID_ARGUMENT.
var errNoStep = errors.New("the quote flow has no step")

// answer is the quote flow's reply to one step.
//
//   - ACTION_INIT or ACTION_BACK, any screen: WELCOME with the products.
//   - ACTION_DATA_EXCHANGE on WELCOME: selected_product, then email, then
//     postal_code (the last two only when they are strings); the first invalid
//     one answers WELCOME with the products and error_message, otherwise
//     PAYMENT with the product and its amount.
//   - ACTION_DATA_EXCHANGE on PAYMENT: SUCCESS with acknowledged.
//   - anything else: an error wrapping errNoStep.
func answer(req *flowsv1.ExchangeRequest) (*flowsv1.ExchangeResponse, error) {
	exchange := req.GetFlowExchange()
	if exchange == nil {
		return nil, fmt.Errorf("%w: flow_exchange is missing", errNoStep)
	}
	payload := exchange.GetPayload()
	switch action := exchange.GetAction(); {
	case action == flowsv1.Action_ACTION_INIT || action == flowsv1.Action_ACTION_BACK:
		return welcome(""), nil
	case action == flowsv1.Action_ACTION_DATA_EXCHANGE && exchange.Screen != nil:
		switch exchange.GetScreen() {
		case "WELCOME":
			return selectProduct(payload), nil
		case "PAYMENT":
			return reply("SUCCESS", map[string]*structpb.Value{
				"acknowledged": structpb.NewBoolValue(true),
			}), nil
		}
	}
	screen := "(none)"
	if exchange.Screen != nil {
		screen = fmt.Sprintf("%q", exchange.GetScreen())
	}
	return nil, fmt.Errorf("%w for action %s on screen %s", errNoStep, exchange.GetAction(), screen)
}

// selectProduct answers ACTION_DATA_EXCHANGE on WELCOME.
func selectProduct(payload *structpb.Struct) *flowsv1.ExchangeResponse {
	id, _ := text(payload, "selected_product")
	var chosen *product
	for i := range products {
		if products[i].id == id {
			chosen = &products[i]
			break
		}
	}
	if chosen == nil {
		return welcome(errorProduct)
	}
	if email, ok := text(payload, "email"); ok && !validEmail(email) {
		return welcome(errorEmail)
	}
	if code, ok := text(payload, "postal_code"); ok && !validPostalCode(code) {
		return welcome(errorPostalCode)
	}
	return reply("PAYMENT", map[string]*structpb.Value{
		"product_id":    structpb.NewStringValue(chosen.id),
		"product_title": structpb.NewStringValue(chosen.title),
		"amount_mxn":    structpb.NewNumberValue(chosen.amount),
	})
}

// text is a payload field's value when it is a string; a field that is
// absent or holds anything else (a number, null, ...) counts as absent.
func text(payload *structpb.Struct, key string) (string, bool) {
	value, ok := payload.GetFields()[key].GetKind().(*structpb.Value_StringValue)
	if !ok {
		return "", false
	}
	return value.StringValue, true
}

// validEmail accepts local@domain.tld without whitespace: enough to catch
// typos, as a form would. Whitespace is Unicode White_Space (U+00A0 counts,
// U+FEFF does not), as Rust's char::is_whitespace in the reference.
func validEmail(email string) bool {
	local, domain, found := strings.Cut(email, "@")
	if !found || local == "" || strings.IndexFunc(email, isWhiteSpace) >= 0 {
		return false
	}
	parts := strings.Split(domain, ".")
	if len(parts) < 2 {
		return false
	}
	for _, part := range parts {
		if part == "" {
			return false
		}
	}
	return true
}

func isWhiteSpace(r rune) bool { return unicode.Is(unicode.White_Space, r) }

// validPostalCode accepts Mexican postal codes: exactly five ASCII digits
// (no other Unicode digits).
func validPostalCode(code string) bool {
	if len(code) != 5 {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}

// welcome is the WELCOME screen with the products, and error_message unless
// errorMessage is empty.
func welcome(errorMessage string) *flowsv1.ExchangeResponse {
	list := make([]*structpb.Value, 0, len(products))
	for _, p := range products {
		list = append(list, structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"id":    structpb.NewStringValue(p.id),
			"title": structpb.NewStringValue(p.title),
		}}))
	}
	data := map[string]*structpb.Value{
		"products": structpb.NewListValue(&structpb.ListValue{Values: list}),
	}
	if errorMessage != "" {
		data["error_message"] = structpb.NewStringValue(errorMessage)
	}
	return reply("WELCOME", data)
}

func reply(screen string, data map[string]*structpb.Value) *flowsv1.ExchangeResponse {
	return &flowsv1.ExchangeResponse{
		Screen: &screen,
		Data:   &structpb.Struct{Fields: data},
	}
}
