package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// Launch is one submission of a user's agent.
type Launch struct {
	ID       string
	User     string
	UID      uint32
	JobID    string // set once sbatch answered, or when adopted from squeue
	Created  time.Time
	Adopted  bool // found in squeue after a restart: no token, certificates only
	Admitted bool // its agent connected at least once

	tokenHash [sha256.Size]byte
	expires   time.Time
	used      bool
}

// launches holds the launches of this control plane's lifetime.
type launches struct {
	mu sync.Mutex
	m  map[string]*Launch
}

// Refusal reasons: the code a refused agent is told, and the log says.
const (
	RefuseHello = "hello"  // malformed hello
	RefuseToken = "token"  // unknown launch, wrong, used or expired token
	RefuseCert  = "cert"   // client certificate not for this launch
	RefuseJob   = "job"    // the launch's job is not running as its user
	RefuseNode  = "node"   // the connection does not come from the job's node
	RefuseMunge = "munge"  // MUNGE credential invalid or of another uid
	RefuseCSR   = "csr"    // bad certificate request
	RefuseCheck = "verify" // squeue, sinfo or unmunge failed
)

// RefusedError is a gateway refusal, as the agent is told.
type RefusedError struct {
	Code    string
	Message string
}

func (e *RefusedError) Error() string {
	return "gateway refused the agent (" + e.Code + "): " + e.Message
}

func refuse(code, msg string) *RefusedError { return &RefusedError{Code: code, Message: msg} }

// ErrUnknownLaunch is returned by SetJob for a launch the gateway does not know.
var ErrUnknownLaunch = errors.New("unknown launch")

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("gateway: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// create records a launch and returns a copy of it with its token.
func (ls *launches) create(user string, uid uint32, ttl time.Duration) (Launch, string) {
	token := randomString(32)
	l := &Launch{ID: randomString(12), User: user, UID: uid, Created: time.Now(),
		tokenHash: sha256.Sum256([]byte(token)), expires: time.Now().Add(ttl)}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.m == nil {
		ls.m = map[string]*Launch{}
	}
	ls.m[l.ID] = l
	return *l, token
}

// adopt records a launch found running in squeue after a restart.
func (ls *launches) adopt(id, user string, uid uint32, jobID string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.m[id] != nil {
		return
	}
	if ls.m == nil {
		ls.m = map[string]*Launch{}
	}
	l := &Launch{ID: id, User: user, UID: uid, JobID: jobID, Created: time.Now(), Adopted: true, used: true}
	ls.m[id] = l
}

func (ls *launches) get(id string) (Launch, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.m[id]
	if l == nil {
		return Launch{}, false
	}
	return *l, true
}

func (ls *launches) setJob(id, jobID string) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.m[id]
	if l == nil {
		return ErrUnknownLaunch
	}
	l.JobID = jobID
	return nil
}

// admit records that the launch's agent was admitted, from job jobID.
func (ls *launches) admit(id, jobID string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.m[id]; l != nil {
		l.JobID, l.Admitted = jobID, true
	}
}

func (ls *launches) remove(id string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	delete(ls.m, id)
}

// redeem spends the launch's token: it succeeds once, before expiry, for
// the right token. A wrong token does not spend it.
func (ls *launches) redeem(id, token string) (Launch, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.m[id]
	if l == nil {
		return Launch{}, refuse(RefuseToken, "no such launch")
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], l.tokenHash[:]) != 1 {
		return Launch{}, refuse(RefuseToken, "wrong token for this launch")
	}
	if l.used {
		return Launch{}, refuse(RefuseToken, "token already used")
	}
	if time.Now().After(l.expires) {
		return Launch{}, refuse(RefuseToken, "token expired")
	}
	l.used = true
	return *l, nil
}

// prune removes the launches whose job is known and not live.
func (ls *launches) prune(live func(jobID string) bool) int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	n := 0
	for id, l := range ls.m {
		if l.JobID != "" && !live(l.JobID) {
			delete(ls.m, id)
			n++
		}
	}
	return n
}
