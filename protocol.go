package ctxd

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
