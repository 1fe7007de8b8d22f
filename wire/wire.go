package wire

import (
	"encoding/json"

	"github.com/tethersync/tether/entity"
)

// APIPrefix is the path prefix of every endpoint of this API version.
const APIPrefix = "/v1"

// Limits shared by client and server.
const (
	// DefaultBatchSize is the number of rows per push batch and pull page
	// when none is configured.
	DefaultBatchSize = 1000
	// MaxBatchSize is the largest number of rows per push batch or pull page.
	MaxBatchSize = 10000
)

// BatchSize returns n, or DefaultBatchSize when n is not positive, capped at
// MaxBatchSize.
func BatchSize(n int) int {
	if n <= 0 {
		return DefaultBatchSize
	}
	return min(n, MaxBatchSize)
}

// Header names.
const (
	// HeaderDevice carries the id of the calling device.
	HeaderDevice = "X-Tether-Device"
	// HeaderTenant, when a request carries it, names the tenant the
	// calling device's database belongs to: the server refuses (403)
	// credentials of any other tenant, so that a token of another tenant
	// never mixes its rows into the database.
	HeaderTenant = "X-Tether-Tenant"
	// HeaderDeviceKey carries the secret of the device HeaderDevice
	// names, which proves the request comes from that device: every
	// request that names a device carries it (see ValidDeviceKey). The
	// device's database creates the key once; the device's first
	// registration records it (the server keeps only its SHA-256), and
	// from then on only a request with the same key may register, push or
	// pull as that device (ErrDeviceKey).
	HeaderDeviceKey = "X-Tether-Device-Key"
)

// ValidDeviceKey reports whether key is a well-formed device key: 32 to
// 128 letters, digits, '-' and '_' (a device makes one from 32 random
// bytes, base64url without padding: 43 characters).
func ValidDeviceKey(key string) bool {
	if len(key) < 32 || len(key) > 128 {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Row is one row of a synced table, as pushed or pulled.
type Row struct {
	Table string `json:"table"`
	ID    string `json:"id"`
	// Base is, in a push, the server version the local edit is based on
	// (0 for a row the device never synced).
	Base int64 `json:"base,omitempty"`
	// Version is, in a pull or a conflict, the server version of the row.
	Version int64 `json:"version,omitempty"`
	Deleted bool  `json:"deleted,omitempty"`
	// HLC is the hybrid logical clock stamp of the change.
	HLC string `json:"hlc"`
	// Device is the device the change came from (set by the server).
	Device string `json:"device,omitempty"`
	// ModifiedBy is the authenticated user who made the change (set by the server).
	ModifiedBy string `json:"modified_by,omitempty"`
	// Values maps column names, other than id, to values.
	Values map[string]any `json:"values"`
	// Changed lists, in a push, the columns the device changed since Base;
	// absent means every column (a new row).
	Changed []string `json:"changed,omitempty"`
	// Increments are, in a push, the changes of the row's counter columns
	// the server has not acknowledged (see Increment).
	Increments []Increment `json:"increments,omitempty"`
	// Reason and Notify, in a pull, mark a row the server wrote to keep
	// references whole (G12): a deleted row brought back, or a row deleted
	// with the one it referenced. Notify is the device whose action was
	// undone, which records it in its conflict log; Reason says why.
	Reason string `json:"reason,omitempty"`
	Notify string `json:"notify,omitempty"`
	// Evict, in a pull or in a conflict's Row, tells the device to remove
	// its copy of the row physically: the row left what the device's
	// principal may see (scopes), or never was in it. Nothing is pushed
	// and nothing is logged for it. Such a row carries only Table, ID and
	// Version.
	Evict bool `json:"evict,omitempty"`

	// Restamped is set by the server, never sent: the row's clock stamp
	// was replaced when it was received, so its pusher must pull it back.
	Restamped bool `json:"-"`
}

// Snapshot is the answer to GET /v1/snapshot?cursor=&limit=: a page of the
// tenant's live rows, table by table in priority order and id order within
// a table, as they are when the page is read. A device whose cursor is
// older than the server's history (ErrHistoryPurged) rebuilds from the
// pages, then pulls from Resume: what changed while it read them.
type Snapshot struct {
	Rows []Row `json:"rows"`
	// Cursor is the position after the page, for the next; it also fixes
	// the version the snapshot started at.
	Cursor string `json:"cursor"`
	More   bool   `json:"more"`
	// Resume is the pull cursor to continue from once every page is in.
	Resume string `json:"resume"`
	// Total is the number of live rows when the snapshot started, for
	// progress; on the first page only.
	Total int `json:"total,omitempty"`
}

// MaxEchoSessions is the most push sessions a pull may name as its own
// (GET /v1/changes?own=): rows a device pushed in them, and that the server
// kept as pushed, are not sent back to it.
const MaxEchoSessions = 64

// Health is the body of GET /v1/health.
type Health struct {
	Status string `json:"status"`
}

// Event is the data of a "changes" event of GET /v1/events: the tenant's
// rows changed up to Version, in a session pushed by Device.
type Event struct {
	Version int64  `json:"version"`
	Device  string `json:"device"`
}

// TableDigest is the digest of one table's rows as entity.Digest makes it.
type TableDigest struct {
	Table  string `json:"table"`
	Rows   int    `json:"rows"`
	SHA256 string `json:"sha256"`
}

// DigestRequest is the body of POST /v1/digest: the columns to digest of
// each table, those a device's app version has (id first). GET /v1/digest
// digests every column of every table.
type DigestRequest struct {
	Columns map[string][]string `json:"columns"`
}

// Digests is the answer to GET /v1/digest: every table, in priority order.
type Digests struct {
	Tables []TableDigest `json:"tables"`
}

// Device is the body of POST /v1/devices and of its answer.
type Device struct {
	Device string `json:"device"`
	Tenant string `json:"tenant,omitempty"`
	User   string `json:"user,omitempty"`
	// Schema is the device's own schema (its app version's), in a
	// registration: the server refuses one that contradicts its own and
	// writes only the columns it has for the device's pushes. Absent means
	// the server's.
	Schema *entity.Schema `json:"schema,omitempty"`
}

// Session is the answer to POST /v1/sessions.
type Session struct {
	Session string `json:"session,omitempty"`
}

// Batch is the body of PUT /v1/sessions/{id}/batches/{seq}.
type Batch struct {
	Rows []Row `json:"rows"`
}

// Query parameters of PUT /v1/sessions/{id}/batches/{seq}, which let a
// push that fits in one batch take one request instead of three.
const (
	// BatchOpen ("open=1") opens the session first when the server does
	// not have it yet, as POST /v1/sessions would (idempotent).
	BatchOpen = "open"
	// BatchCommit ("commit=1") commits the session once the batch is
	// staged, as POST /v1/sessions/{id}/commit would; the answer's Commit
	// is the commit's answer. The batch must be the session's last.
	BatchCommit = "commit"
	// BatchAttempt ("attempt=N") numbers the device's attempts at a
	// session, growing with each: the server refuses (409) a batch from an
	// earlier attempt than the copy it staged under that batch number, so
	// that a request delayed on the way (a proxy that retried it) cannot
	// undo the newer copy. Absent counts as 0.
	BatchAttempt = "attempt"
	// BatchBase ("base=K") goes with BatchAttempt: the batches before
	// batch K are those the device holds as acknowledged when the run of
	// sends numbered by the attempt began. The first batch of a newer run
	// the server stages drops what earlier runs staged from batch K on;
	// a batch of an earlier run than the session's newest is refused
	// (409) and drops nothing. Absent means the batch's own number.
	BatchBase = "base"
)

// BatchParams are the query parameters of a batch: BatchOpen,
// BatchCommit, BatchAttempt and BatchBase.
type BatchParams struct {
	Open    bool
	Commit  bool
	Attempt int64
	// Base is sent with Attempt when it is below the batch's number
	// (BatchBase): a device that numbers its attempts sets it on every
	// batch of a run.
	Base int
}

// BatchAck is the answer to a batch.
type BatchAck struct {
	Seq    int `json:"seq"`
	Staged int `json:"staged"`
	// Runs says the server keeps runs of sends apart (BatchBase: a batch
	// of an earlier run is refused, a newer run drops what earlier ones
	// staged past its base, a commit needs batches 0..N). A device puts
	// a second batch on the wire, and sends BatchBase, only to a server
	// that says so: an earlier server would take batches of two runs
	// mixed, and refuses the parameter.
	Runs bool `json:"runs,omitempty"`
	// Commit is the answer to the commit, for a batch sent with
	// BatchCommit; nil otherwise.
	Commit *Commit `json:"commit,omitempty"`
}

// LastBatch names the batch that was to commit its session: its number and
// the SHA-256, in hex, of its body as sent (JSON, before gzip).
type LastBatch struct {
	Seq    int    `json:"seq"`
	Digest string `json:"digest"`
}

// CommitRequest is the body of POST /v1/sessions/{id}/commit ({} for a
// plain commit).
type CommitRequest struct {
	// Settle is the batch the device sent with BatchCommit and got no
	// answer for. The server stages such a batch only together with the
	// commit, so the session is either committed by it, and the answer's
	// Settled says so, or not committed: batches from Settle.Seq on are
	// then not the device's (an earlier attempt's), and are dropped before
	// the session is committed without them.
	Settle *LastBatch `json:"settle,omitempty"`
}

// Commit is the answer to POST /v1/sessions/{id}/commit. Every row of the
// session that is not listed in Conflicts with Winner "server" now has
// server version Version.
type Commit struct {
	Version   int64      `json:"version"`
	Applied   int        `json:"applied"`
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// Settled reports, in the answer to a commit with
	// CommitRequest.Settle, that the batch named there committed the
	// session.
	Settled bool `json:"settled,omitempty"`
	// Counted are rows of the session the server holds otherwise than
	// pushed without a conflict, as it holds them: rows whose counters
	// took increments or hold another total than pushed, and rows whose
	// change was to counters alone, which kept their other columns. The
	// device takes each, its counters plus the increments it made since
	// it read the row.
	Counted []Row `json:"counted,omitempty"`
	// ModifiedBy is the user the server recorded as the writer of the
	// session's rows (the authenticated principal's, never the payload's:
	// G8). The device writes it, with Version, into its copies of the rows
	// it pushed, without downloading them. Empty from a server that did
	// not send it: the device then keeps what its copies say.
	ModifiedBy string `json:"modified_by,omitempty"`
}

// Winner values of a Conflict.
const (
	WinnerClient = "client"
	WinnerServer = "server"
	WinnerMerged = "merged"
)

// Conflict reports a pushed row whose server row had moved since the
// version the push was based on.
type Conflict struct {
	Table    string `json:"table"`
	ID       string `json:"id"`
	Strategy string `json:"strategy"`
	// Winner is WinnerClient when the pushed row was applied, WinnerServer
	// when the server row was kept, WinnerMerged when a merge of both was
	// applied.
	Winner string `json:"winner"`
	// Row is the winning row as the server now holds it.
	Row Row `json:"row"`
	// Lost is the server's row that the pushed or merged row replaced, when
	// the winner is not the server's.
	Lost *Row `json:"lost,omitempty"`
	// PushedHLC is the clock stamp of the pushed row.
	PushedHLC string `json:"pushed_hlc"`
	// Reason says why, for a conflict the server settled to keep
	// references whole (Strategy StrategyReference).
	Reason string `json:"reason,omitempty"`
}

// StrategyReference is Conflict.Strategy of a conflict the server settled
// to keep references whole (G12): a delete undone because live rows
// reference the row, or a row deleted with the one it referenced. The
// table's own strategies are the server's (server.Strategy).
const StrategyReference = "reference"

// StrategyForbidden is Conflict.Strategy of a pushed row the server
// refused because its principal may not write it (scopes, or the
// server's Authorize): the row was not applied, Reason says why, and Row
// is the server's row, or a row with Evict when the device may not see
// it (or there is none).
const StrategyForbidden = "forbidden"

// Changes is the answer to GET /v1/changes. Where the page ends (Cursor,
// More, Wait, Partial) comes before its rows, so that a client may ask for
// the next page while it reads them (ReadChangesHead).
type Changes struct {
	// Cursor is the opaque position after the last change; pass it to the
	// next call.
	Cursor string `json:"cursor"`
	// More reports that changes remain after Cursor.
	More bool `json:"more"`
	// Wait asks the device to store this page before it asks for the
	// next: the next request tells the server it holds it (a page of the
	// phases that change which rows a device holds, with scopes).
	Wait bool `json:"wait"`
	// Partial reports that the page does not end on a whole server
	// version: it ends inside one session's rows (a session larger than a
	// page), or inside the phases that change which rows a device holds
	// (scopes). The device sets it aside, and applies it together with the
	// pages up to the first that is not Partial, in one transaction: an
	// app reading its database sees whole sessions only (G4).
	Partial bool `json:"partial"`
	// Changes are the page's rows, in commit order.
	Changes []Row `json:"changes"`
	// Raw is the JSON array of Changes as the server wrote it, set by
	// ReadChanges for a page that said it is Partial before its rows,
	// when a RowReader reads the same rows from it (a device sets such a
	// page aside as it came, without writing it again); nil otherwise.
	// Whoever changes Changes must clear it.
	Raw []byte `json:"-"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names the problem of a refused request.
type ErrorDetail struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Details json.RawMessage `json:"details,omitempty"`
}
