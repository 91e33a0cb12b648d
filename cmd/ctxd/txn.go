package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
)

func (a *app) txnCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "txn [OP...]",
		Short: "Apply several puts, deletes and patches all or nothing",
		Long: `Apply several puts, deletes and patches in one transaction (POST /v1/txn):
all of them, or none when one fails (a version conflict, a patch that does
not apply, a bad key), with the error naming the key.

Each OP is one operation as JSON, in the form of the REST API's ops:
  {"op":"put","key":K,"value":V}      also "ttl":"30s"
  {"op":"delete","key":K}
  {"op":"patch","key":K,"patch":P}    also "patch_type":"merge" or "json"
Any op may have "ns" (default: -n) and "if_version" (applies only if the key
is at that version; 0: only if it does not exist). A field the API does not
know is refused, so that a misspelt "if_version" cannot turn a conditional
write into an unconditional one.

Without OP arguments (or with -), the ops are read from standard input: a
JSON array of ops, a whole request ({"who":...,"ops":[...]}), or op objects
one after another (one per line, say).

The table shows each op's key as the transaction left it; -o json prints the
server's answer ({"revision":R,"results":[...]}). Exit codes as for put: 5 on
a version conflict or a failed patch test, 4 when a patched key does not
exist, 6 when the outcome is unknown; nothing is written in any of them.`,
		Example: `  ctxd txn '{"op":"put","key":"a","value":1,"if_version":0}' '{"op":"delete","key":"b"}'
  ctxd txn -n prod '{"op":"put","key":"deploy/version","value":42,"if_version":3}' \
           '{"op":"patch","key":"deploy/state","patch":{"rolling":true}}'
  ctxd txn <<'EOF'
  {"op":"put","key":"leader","value":"ann","if_version":0}
  {"op":"put","key":"leader/since","value":"2026-12-04T12:00:00Z"}
  EOF`,
	}
	c := a.clientFlags(cmd, outTable, false)
	cmd.RunE = a.action(func(cmd *cobra.Command, args []string) error {
		who, ops, err := txnOps(args, a.stdin)
		if err != nil {
			return err
		}
		if cmd.Flags().Changed("who") || who == "" {
			who = c.author()
		}
		for i := range ops {
			if ops[i].Namespace == "" {
				ops[i].Namespace = c.namespace
			}
		}
		return c.withClient(cmd, func(ctx context.Context, cl *client.Client) error {
			res, err := cl.Txn(ctx, ops, client.TxnOptions{Who: who})
			if err != nil {
				return err
			}
			return c.printTxn(ops, res)
		})
	})
	return cmd
}

// txnOps reads the ops of ctxd txn: one JSON op per argument, or, without
// arguments (or with -), the JSON on stdin. who is the request's own when
// stdin held a whole request.
func txnOps(args []string, stdin io.Reader) (who string, ops []client.TxnOp, err error) {
	if len(args) == 0 || (len(args) == 1 && args[0] == "-") {
		raw, err := io.ReadAll(stdin)
		if err != nil {
			return "", nil, fmt.Errorf("read ops from stdin: %w", err)
		}
		who, ops, err = parseTxnStream(raw)
		if err != nil {
			return "", nil, err
		}
	} else {
		for i, arg := range args {
			var op client.TxnOp
			if err := decodeOp([]byte(arg), &op); err != nil {
				return "", nil, usagef("OP %d (%s): %v", i+1, arg, err)
			}
			ops = append(ops, op)
		}
	}
	if len(ops) == 0 {
		return "", nil, usagef("no ops: give each as a JSON argument, or on stdin")
	}
	return who, ops, nil
}

// parseTxnStream reads stdin's ops: an array of ops, a request object
// (with "ops"), or op objects one after another.
func parseTxnStream(raw []byte) (who string, ops []client.TxnOp, err error) {
	var values []json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		var v json.RawMessage
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", nil, usagef("stdin: %v", err)
		}
		values = append(values, v)
	}
	if len(values) == 1 {
		var fields map[string]json.RawMessage
		switch {
		case values[0][0] == '[':
			var elems []json.RawMessage
			err = decodeStrict(values[0], &elems)
			values = elems
		case json.Unmarshal(values[0], &fields) == nil && fields["ops"] != nil: // a whole request
			var req struct {
				Who string            `json:"who,omitempty"`
				Ops []json.RawMessage `json:"ops"`
			}
			err = decodeStrict(values[0], &req)
			who, values = req.Who, req.Ops
		}
		if err != nil {
			return "", nil, usagef("stdin: %v", err)
		}
	}
	ops = make([]client.TxnOp, len(values))
	for i, v := range values {
		if err := decodeOp(v, &ops[i]); err != nil {
			return "", nil, usagef("stdin, op %d: %v", i+1, err)
		}
	}
	return who, ops, nil
}

// decodeOp decodes one op strictly (decodeStrict). A null would decode as
// an op with nothing in it, refused only by the server.
func decodeOp(raw []byte, op *client.TxnOp) error {
	if string(bytes.TrimSpace(raw)) == "null" {
		return errors.New("an op is a JSON object, not null")
	}
	return decodeStrict(raw, op)
}

// decodeStrict decodes one JSON value into v, refusing fields v does not
// have and anything after the value. The ops are sent re-encoded from
// client.TxnOp: a field it lacks would be dropped here, unseen by the
// server (which refuses unknown fields), and a misspelt if_version would
// make a conditional write unconditional.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(ctxd.DecodeErrorMessage(err)) // in JSON's words, not Go's types
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// printTxn prints a transaction's answer: -o json as the server gave it,
// the table a row per op.
func (c *common) printTxn(ops []client.TxnOp, res client.TxnResult) error {
	res.Records = orEmpty(res.Records)
	if c.output == outJSON {
		return c.printJSON(res)
	}
	if len(res.Records) != len(ops) {
		return fmt.Errorf("txn: the server answered %d results for %d ops", len(res.Records), len(ops))
	}
	expires := expiresColumn(res.Records, time.Now())
	rows := make([]string, len(res.Records))
	for i, r := range res.Records {
		rows[i] = ops[i].Op + "\t" + recordRow(r, expires, ops[i].Op == ctxd.OpDelete.String())
	}
	return c.table("OP\t"+recordHeader(expires), rows)
}
