package agentrpc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// Slow answers after the duration it is given.
type Slow struct{}

func (Slow) Sleep(d *time.Duration, reply *int) error {
	time.Sleep(*d)
	*reply = 1
	return nil
}

func dialServices(t testing.TB, services map[string]any) *agentrpc.Client {
	t.Helper()
	sock := serve(t, services)
	c, err := agentrpc.Dial(context.Background(), "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A call waiting on a WithTimeout context ends as one on the standard
// context would: at the deadline, on cancel, when the parent ends, or with
// the reply.
func TestWithTimeoutCall(t *testing.T) {
	c := dialServices(t, map[string]any{"Slow": Slow{}})
	tests := []struct {
		name    string
		sleep   time.Duration // the agent's answer time
		timeout time.Duration
		during  func(cancel, parentCancel context.CancelFunc, ctx context.Context)
		want    error
	}{
		{"answers in time", 0, time.Minute, nil, nil},
		{"deadline passes", time.Minute, 50 * time.Millisecond, nil, context.DeadlineExceeded},
		{"canceled while waiting", time.Minute, time.Minute, func(cancel, _ context.CancelFunc, _ context.Context) { cancel() }, context.Canceled},
		{"parent canceled while waiting", time.Minute, time.Minute, func(_, parentCancel context.CancelFunc, _ context.Context) { parentCancel() }, context.Canceled},
		{"Done asked for, then deadline", time.Minute, 50 * time.Millisecond, func(_, _ context.CancelFunc, ctx context.Context) { ctx.Done() }, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, parentCancel := context.WithCancel(context.Background())
			defer parentCancel()
			ctx, cancel := agentrpc.WithTimeout(parent, tt.timeout)
			defer cancel()
			if tt.during != nil {
				go func() {
					time.Sleep(20 * time.Millisecond)
					tt.during(cancel, parentCancel, ctx)
				}()
			}
			var reply int
			errc := make(chan error, 1)
			go func() { errc <- c.Call(ctx, "Slow.Sleep", &tt.sleep, &reply) }()
			select {
			case err := <-errc:
				if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
					t.Fatalf("Call: got %v, want %v", err, tt.want)
				}
				if tt.want == nil && reply != 1 {
					t.Fatalf("reply: got %d, want 1", reply)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Call did not return")
			}
		})
	}
}

// A canceled call's pooled timer must not wake a later call: many calls in
// a row, each canceled right after it returns, all get their replies.
func TestWithTimeoutTimerReuse(t *testing.T) {
	c := dialServices(t, map[string]any{"Slow": Slow{}})
	d := 2 * time.Millisecond
	for i := range 200 {
		ctx, cancel := agentrpc.WithTimeout(context.Background(), time.Minute)
		var reply int
		err := c.Call(ctx, "Slow.Sleep", &d, &reply)
		cancel()
		if err != nil || reply != 1 {
			t.Fatalf("call %d: got %v, reply %d; want nil, 1", i, err, reply)
		}
	}
}

// The context itself behaves as context.WithTimeout's.
func TestWithTimeoutContext(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := agentrpc.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if err := ctx.Err(); err != nil {
			t.Fatalf("Err before the deadline: got %v, want nil", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("Done not closed after the deadline")
		}
		if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Err: got %v, want DeadlineExceeded", err)
		}
	})
	t.Run("cancel before Done", func(t *testing.T) {
		ctx, cancel := agentrpc.WithTimeout(context.Background(), time.Minute)
		cancel()
		if err := ctx.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err: got %v, want Canceled", err)
		}
		select {
		case <-ctx.Done():
		default:
			t.Fatal("Done not closed after cancel")
		}
	})
	t.Run("earlier parent deadline", func(t *testing.T) {
		parent, pcancel := context.WithTimeout(context.Background(), time.Second)
		defer pcancel()
		ctx, cancel := agentrpc.WithTimeout(parent, time.Hour)
		defer cancel()
		pd, _ := parent.Deadline()
		if got, ok := ctx.Deadline(); !ok || !got.Equal(pd) {
			t.Fatalf("Deadline: got %v %v, want the parent's %v", got, ok, pd)
		}
	})
	t.Run("values from the parent", func(t *testing.T) {
		type key struct{}
		ctx, cancel := agentrpc.WithTimeout(context.WithValue(context.Background(), key{}, "v"), time.Minute)
		defer cancel()
		if got := ctx.Value(key{}); got != "v" {
			t.Fatalf("Value: got %v, want v", got)
		}
	})
}

// The cost of bounding a call: the standard context against WithTimeout.
// Each call has a new parent, as each HTTP request has its own context.
func BenchmarkCallTimeout(b *testing.B) {
	c := dialServices(b, map[string]any{"File": File{}})
	for _, bc := range []struct {
		name string
		with func(context.Context, time.Duration) (context.Context, context.CancelFunc)
	}{{"std", context.WithTimeout}, {"agentrpc", agentrpc.WithTimeout}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				parent, pcancel := context.WithCancel(context.Background())
				ctx, cancel := bc.with(parent, time.Minute)
				_, err := c.Read(ctx, agentrpc.ReadRequest{Path: "x", Length: 16})
				cancel()
				pcancel()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
