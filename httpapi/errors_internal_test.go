package httpapi

import (
	"fmt"
	"net/http"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/framework0/ctxd"
)

// A full disk under a snapshot, an upload or a dump is 507 with the file
// named (it was 500 "internal server error", the cause only in the log).
// A disk quota spent (EDQUOT) likewise.
func TestAFullDiskIsInsufficientStorage(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		err := fmt.Errorf("create snapshot: write snapshot: %w",
			&os.PathError{Op: "write", Path: "/srv/snapshots/.tmp-create-1", Err: errno})
		status, code, known := classify(err)
		assert.True(t, known, "%v", errno)
		assert.Equal(t, http.StatusInsufficientStorage, status, "%v", errno)
		assert.Equal(t, ctxd.CodeInsufficientStorage, code, "%v", errno)
	}
	assert.Contains(t, errorCodes(), ctxd.CodeInsufficientStorage, "in the OpenAPI document's enum")
}
