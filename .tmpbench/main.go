package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"octo/internal/client"
)

func main() {
	c := client.NewUnix(os.Getenv("OCTO_SOCKET"))
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		s, err := c.Start(ctx, client.StartRequest{Command: []string{"true"}})
		if err != nil {
			panic(err)
		}
		t1 := time.Now()
		a, err := c.Attach(ctx, s.ID, client.AttachOptions{Offset: 0, CloseStdin: true})
		if err != nil {
			panic(err)
		}
		t2 := time.Now()
		io.Copy(io.Discard, a)
		t3 := time.Now()
		s, _ = c.Session(ctx, s.ID)
		t4 := time.Now()
		fmt.Println("start", t1.Sub(t0), "attach", t2.Sub(t1), "stream", t3.Sub(t2), "get", t4.Sub(t3), s.State)
	}
}
