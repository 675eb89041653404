// An independent ttrpc peer for cocoon's tests, built on containerd's own Go ttrpc library
// (Debian's golang-github-containerd-ttrpc-dev). It serves, or calls, the test service
// "cocoon.test.Echo" so that the Swift implementation is checked against the reference one.
//
//	ttrpc-go server SOCKET    serve until killed
//	ttrpc-go client SOCKET    run the client checks against a server, one result line each
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/gogo/protobuf/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const service = "cocoon.test.Echo"

func serve(path string) error {
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	s, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	s.Register(service, map[string]ttrpc.Method{
		"Echo": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req types.StringValue
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			return &types.StringValue{Value: req.Value}, nil
		},
		// Fail answers with the status code it is given, to check code and message mapping.
		"Fail": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req types.Int32Value
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			return nil, status.Errorf(codes.Code(req.Value), "failed as asked with code %d", req.Value)
		},
		// Sleep holds its response back, to check that other calls overtake it.
		"Sleep": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req types.Int64Value
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			select {
			case <-time.After(time.Duration(req.Value) * time.Millisecond):
				return &types.Int64Value{Value: req.Value}, nil
			case <-ctx.Done():
				return nil, status.Errorf(codes.DeadlineExceeded, "sleep cut short: %v", ctx.Err())
			}
		},
		// Metadata returns what the request carried, as sorted key=value pairs.
		"Metadata": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req types.Empty
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			md, _ := ttrpc.GetMetadata(ctx)
			var pairs []string
			for k, vs := range md {
				for _, v := range vs {
					pairs = append(pairs, k+"="+v)
				}
			}
			sortStrings(pairs)
			_, hasDeadline := ctx.Deadline()
			return &types.StringValue{Value: fmt.Sprintf("%s deadline=%v", strings.Join(pairs, ","), hasDeadline)}, nil
		},
		// Big answers with a payload of the size asked for.
		"Big": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req types.Int64Value
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			return &types.BytesValue{Value: make([]byte, req.Value)}, nil
		},
	})
	fmt.Println("listening")
	return s.Serve(context.Background(), l)
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func describe(err error) string {
	if err == nil {
		return "ok"
	}
	st, _ := status.FromError(err)
	return fmt.Sprintf("%s: %s", st.Code(), st.Message())
}

// client runs each check against the server and prints one line per check.
func client(path string) error {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	ctx := context.Background()

	var s types.StringValue
	err = c.Call(ctx, service, "Echo", &types.StringValue{Value: "hello from go"}, &s)
	fmt.Printf("echo %s %s\n", describe(err), s.Value)

	err = c.Call(ctx, service, "Fail", &types.Int32Value{Value: 5}, &types.Empty{})
	fmt.Printf("fail %s\n", describe(err))

	err = c.Call(ctx, service, "Nope", &types.Empty{}, &types.Empty{})
	fmt.Printf("unknown-method %s\n", describe(err))
	err = c.Call(ctx, "cocoon.test.Missing", "Echo", &types.Empty{}, &types.Empty{})
	fmt.Printf("unknown-service %s\n", describe(err))

	mctx := ttrpc.WithMetadata(ctx, ttrpc.MD{"containerd-namespace-ttrpc": []string{"k8s.io"}, "x-two": []string{"a", "b"}})
	mctx, cancel := context.WithTimeout(mctx, 5*time.Second)
	err = c.Call(mctx, service, "Metadata", &types.Empty{}, &s)
	cancel()
	fmt.Printf("metadata %s %s\n", describe(err), s.Value)

	// A slow call and a fast one at once: the fast one must come back first.
	var wg sync.WaitGroup
	order := make(chan string, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		var r types.Int64Value
		if err := c.Call(ctx, service, "Sleep", &types.Int64Value{Value: 400}, &r); err != nil {
			order <- "sleep-" + describe(err)
			return
		}
		order <- "sleep"
	}()
	time.Sleep(50 * time.Millisecond)
	go func() {
		defer wg.Done()
		var r types.StringValue
		if err := c.Call(ctx, service, "Echo", &types.StringValue{Value: "fast"}, &r); err != nil {
			order <- "echo-" + describe(err)
			return
		}
		order <- "echo"
	}()
	wg.Wait()
	fmt.Printf("order %s,%s\n", <-order, <-order)

	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = c.Call(tctx, service, "Sleep", &types.Int64Value{Value: 3000}, &types.Int64Value{})
	cancel()
	// Either the server's DeadlineExceeded status or the client's own context expiry, whichever wins.
	timeout := strings.SplitN(describe(err), ":", 2)[0]
	if errors.Is(err, context.DeadlineExceeded) {
		timeout = "DeadlineExceeded"
	}
	fmt.Printf("timeout %s\n", timeout)

	var b types.BytesValue
	err = c.Call(ctx, service, "Big", &types.Int64Value{Value: 3 << 20}, &b)
	fmt.Printf("big %s %d\n", describe(err), len(b.Value))
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: ttrpc-go server|client SOCKET")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = serve(os.Args[2])
	case "client":
		err = client(os.Args[2])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ttrpc-go:", err)
		os.Exit(1)
	}
}
