package ctxd

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
)

// The WebSocket protocol of GET /v1/watch: every frame is one JSON object
// whose "type" is one of these; with batch=true a frame of type "batch"
// carries several of them. Framework0's names are used where they exist.
const (
	// Server to client.
	TypeContextUpdated        = "context_updated"
	TypeBatch                 = "batch"
	TypeSubscribed            = "subscribed"
	TypeContextSnapshot       = "context_snapshot"
	TypeClientStats           = "client_stats"
	TypeRegistrationConfirmed = "registration_confirmed"
	TypeContextSetConfirmed   = "context_set_confirmed"
	TypeContextPatchConfirmed = "context_patch_confirmed"
	TypeContextDumped         = "context_dumped"
	TypeCompacted             = "compacted"
	TypeReset                 = "reset"
	TypeError                 = "error"
	TypePong                  = "pong"

	// Client to server (client_stats is both: a request and its answer).
	TypeSubscribe      = "subscribe"
	TypeUnsubscribe    = "unsubscribe"
	TypeContextSet     = "context_set"
	TypeContextPatch   = "context_patch"
	TypeClientRegister = "client_register"
	TypePing           = "ping"
)

// Subscription is one (namespace, key prefix) pair a watcher follows.
// AllNamespaces as the namespace means every namespace.
type Subscription struct {
	Namespace string `json:"ns"`
	Prefix    string `json:"prefix"`
}

// AllNamespaces, as a subscription's namespace, matches every namespace.
const AllNamespaces = "*"

// HeaderDraining is on every answer of a server that is shutting down
// gracefully (shutdown_drain): the answer is good, and the client should
// send its next requests to another instance (a client of several does).
const HeaderDraining = "X-Ctxd-Draining"

// DecodeErrorMessage describes err, from encoding/json decoding a message
// into a struct, in the protocol's words: `"if_version" must be a whole
// number, 0 or more (not a string)` where encoding/json says "cannot
// unmarshal string into Go struct field .if_version of type uint64".
// Other errors (bad JSON) are described as encoding/json describes them.
func DecodeErrorMessage(err error) string {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		if strings.Contains(err.Error(), "exceeded max depth") {
			// The document's own levels count: a value inside it has
			// fewer left than a value sent alone (PUT).
			return "arrays and objects nest more than 10000 deep (encoding/json's limit, counting the request document's own levels)"
		}
		return strings.TrimPrefix(err.Error(), "json: ") // json: unknown field "x"
	}
	var want string
	switch te.Type.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "a whole number, 0 or more"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		want = "a whole number"
	case reflect.Float32, reflect.Float64:
		want = "a number"
	case reflect.String:
		want = "a string"
	case reflect.Bool:
		want = "true or false"
	case reflect.Slice, reflect.Array:
		want = "an array"
	default:
		want = "an object"
	}
	got := te.Value // "string", "number -1", "array", ...
	switch {
	case strings.HasPrefix(got, "number "):
		got = strings.TrimPrefix(got, "number ")
	case got == "array" || got == "object":
		got = "an " + got
	default:
		got = "a " + got
	}
	if te.Field == "" {
		return "must be " + want + ", not " + got
	}
	return strconv.Quote(te.Field) + " must be " + want + ", not " + got
}

// DecodeStrict decodes the one JSON value of data into v, refusing members
// v does not have (a misspelt "if_version" must not turn a
// compare-and-swap into a plain write) and anything after the value; the
// error is in JSON's words (DecodeErrorMessage).
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(DecodeErrorMessage(err))
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}
