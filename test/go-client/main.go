// cri-client: a grpc-go CRI ImageService client that dials the way kubelet and crictl do, for
// integration tests. Built by build.sh from Debian's grpc-go (GOPATH mode, no network).
//
//	cri-client --socket PATH [--dial bare|localhost] [--timeout 10s] RPC [ARGS]
//
// RPCs: list [IMAGE], status IMAGE, pull IMAGE [USER PASS], remove IMAGE, fsinfo, version.
// Success: {"ok":true,"dial":...,"rpc":...,"response":{...}} on stdout, exit 0.
// Failure: {"ok":false,...,"error":{...}} on stdout, exit 1 (usage errors exit 2).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	runtime "pullguard.local/cri/runtime/v1"
)

// Debian's github.com/golang/protobuf is 1.3 (pre-APIv2), which cannot marshal messages made by
// protoc-gen-go 1.28, so grpc-go's default "proto" codec is replaced by one on the APIv2 runtime.
// The wire format is the same protobuf either way.
type protoCodec struct{}

func (protoCodec) Name() string { return "proto" }

func (protoCodec) Marshal(v interface{}) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("codec: %T is not a proto.Message", v)
	}
	return proto.Marshal(m)
}

func (protoCodec) Unmarshal(data []byte, v interface{}) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("codec: %T is not a proto.Message", v)
	}
	return proto.Unmarshal(data, m)
}

func init() { encoding.RegisterCodec(protoCodec{}) }

type detail struct {
	TypeURL    string            `json:"type_url"`
	Reason     string            `json:"reason,omitempty"`
	Domain     string            `json:"domain,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	Violations []violation       `json:"violations,omitempty"`
	Error      string            `json:"error,omitempty"`
}

type violation struct {
	Type        string `json:"type"`
	Subject     string `json:"subject"`
	Description string `json:"description"`
}

type failure struct {
	// What grpc-go's status.FromError gives (with grpc-go < 1.59 taken from grpc-status-details-bin
	// when present) — the view kubelet reads.
	Code     int    `json:"code"`
	CodeName string `json:"code_name"`
	Message  string `json:"message"`
	// err.Error(), what kubelet/crictl print (before the Unknown-code stripping).
	ErrorString string `json:"error_string"`
	// Sentinel prefix checks kubelet's evalCRIPullErr does after stripping code Unknown.
	SignatureValidationFailed bool     `json:"signature_validation_failed"`
	RegistryUnavailable       bool     `json:"registry_unavailable"`
	Details                   []detail `json:"details"`
	// The grpc-status / grpc-message trailers as sent on the wire, independent of the details proto.
	Header *headerStatus `json:"header,omitempty"`
}

type headerStatus struct {
	GrpcStatus    string `json:"grpc_status"`
	GrpcMessage   string `json:"grpc_message"`
	HasDetailsBin bool   `json:"has_details_bin"`
}

func main() {
	socket := flag.String("socket", "", "unix socket path")
	dial := flag.String("dial", "bare", "bare: authority = socket path (kubelet/crictl <= 1.30); localhost: authority localhost (1.31+)")
	timeout := flag.Duration("timeout", 10*time.Second, "connect and call timeout")
	flag.Parse()
	args := flag.Args()
	if *socket == "" || len(args) == 0 || (*dial != "bare" && *dial != "localhost") {
		fmt.Fprintln(os.Stderr, "usage: cri-client --socket PATH [--dial bare|localhost] list|status|pull|remove|fsinfo|version [ARGS]")
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	tap := newWireTap()
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "unix", *socket)
		if err != nil {
			return nil, err
		}
		return tap.wrap(c), nil
	}
	opts := []grpc.DialOption{grpc.WithInsecure(), grpc.WithBlock(), grpc.WithContextDialer(dialer)}
	if *dial == "localhost" {
		opts = append(opts, grpc.WithAuthority("localhost"))
	}
	// Like kubelet <= 1.30: the target is the bare path, so grpc-go's passthrough resolver makes it the
	// :authority unless WithAuthority overrides it.
	conn, err := grpc.DialContext(ctx, *socket, opts...)
	if err != nil {
		emit(map[string]interface{}{"ok": false, "dial": *dial, "rpc": args[0], "dial_error": err.Error()}, 1)
	}
	resp, err := call(ctx, conn, args)
	if err == errUsage {
		fmt.Fprintln(os.Stderr, "bad arguments for", args[0])
		os.Exit(2)
	}
	// Closing the connection ends the tap, after which it has seen every trailer the call received.
	conn.Close()
	tap.wait()
	if err != nil {
		emit(map[string]interface{}{"ok": false, "dial": *dial, "rpc": args[0], "error": describe(err, tap.last())}, 1)
	}
	raw, merr := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(resp)
	if merr != nil {
		fmt.Fprintln(os.Stderr, "marshal:", merr)
		os.Exit(3)
	}
	emit(map[string]interface{}{"ok": true, "dial": *dial, "rpc": args[0], "response": json.RawMessage(raw)}, 0)
}

var errUsage = fmt.Errorf("usage")

func call(ctx context.Context, conn *grpc.ClientConn, args []string) (proto.Message, error) {
	images := runtime.NewImageServiceClient(conn)
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch args[0] {
	case "list":
		req := &runtime.ListImagesRequest{}
		if arg(1) != "" {
			req.Filter = &runtime.ImageFilter{Image: &runtime.ImageSpec{Image: arg(1)}}
		}
		return images.ListImages(ctx, req)
	case "status":
		return images.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: arg(1)}, Verbose: true})
	case "pull":
		req := &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: arg(1)}}
		if arg(2) != "" {
			req.Auth = &runtime.AuthConfig{Username: arg(2), Password: arg(3)}
		}
		return images.PullImage(ctx, req)
	case "remove":
		return images.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: arg(1)}})
	case "fsinfo":
		return images.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{})
	case "version":
		return runtime.NewRuntimeServiceClient(conn).Version(ctx, &runtime.VersionRequest{})
	}
	return nil, errUsage
}

func describe(err error, header *headerStatus) failure {
	st, _ := status.FromError(err)
	f := failure{
		Code:        int(st.Code()),
		CodeName:    st.Code().String(),
		Message:     st.Message(),
		ErrorString: err.Error(),
		Details:     []detail{},
	}
	// kubelet's cri-client strips code Unknown down to the bare message before the prefix checks.
	text := err.Error()
	if st.Code() == 2 {
		text = st.Message()
	}
	f.SignatureValidationFailed = strings.HasPrefix(text, "SignatureValidationFailed")
	f.RegistryUnavailable = strings.HasPrefix(text, "RegistryUnavailable")
	// Details() is what a kubelet-side caller gets: each Any resolved through the proto registry.
	urls := st.Proto().GetDetails()
	for i, item := range st.Details() {
		d := detail{}
		if i < len(urls) {
			d.TypeURL = urls[i].GetTypeUrl()
		}
		switch m := item.(type) {
		case *errdetails.ErrorInfo:
			d.Reason, d.Domain, d.Metadata = m.GetReason(), m.GetDomain(), m.GetMetadata()
		case *errdetails.PreconditionFailure:
			d.Violations = []violation{}
			for _, v := range m.GetViolations() {
				d.Violations = append(d.Violations, violation{v.GetType(), v.GetSubject(), v.GetDescription()})
			}
		case error:
			d.Error = m.Error()
		}
		f.Details = append(f.Details, d)
	}
	f.Header = header
	return f
}

func emit(v interface{}, code int) {
	out, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintln(os.Stderr, "marshal:", err)
		os.Exit(3)
	}
	fmt.Println(string(out))
	os.Exit(code)
}

// wireTap decodes the server-to-client HTTP/2 frames of the first connection, because grpc-go
// hides grpc-status, grpc-message and grpc-status-details-bin from its metadata API and, before
// 1.59, replaces them with the details proto: this keeps the plain header view of the status.
type wireTap struct {
	once   sync.Once
	pw     *io.PipeWriter
	done   chan struct{}
	mu     sync.Mutex
	status *headerStatus
}

func newWireTap() *wireTap { return &wireTap{done: make(chan struct{})} }

func (t *wireTap) wrap(c net.Conn) net.Conn {
	tapped := false
	t.once.Do(func() {
		pr, pw := io.Pipe()
		t.pw = pw
		tapped = true
		go t.run(pr)
	})
	if !tapped {
		return c
	}
	return &tappedConn{Conn: c, pw: t.pw}
}

func (t *wireTap) run(pr *io.PipeReader) {
	defer close(t.done)
	defer pr.Close()
	fr := http2.NewFramer(io.Discard, pr)
	fr.SetMaxReadFrameSize(1 << 24)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 20
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			return
		}
		mh, ok := frame.(*http2.MetaHeadersFrame)
		if !ok {
			continue
		}
		if hasField(mh, "grpc-status") {
			v := field(mh, "grpc-status")
			msg, uerr := url.PathUnescape(field(mh, "grpc-message"))
			if uerr != nil {
				msg = field(mh, "grpc-message")
			}
			t.mu.Lock()
			t.status = &headerStatus{GrpcStatus: v, GrpcMessage: msg, HasDetailsBin: hasField(mh, "grpc-status-details-bin")}
			t.mu.Unlock()
		}
	}
}

func field(mh *http2.MetaHeadersFrame, name string) string {
	for _, f := range mh.RegularFields() {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

func hasField(mh *http2.MetaHeadersFrame, name string) bool {
	for _, f := range mh.RegularFields() {
		if f.Name == name {
			return true
		}
	}
	return false
}

func (t *wireTap) wait() {
	if t.pw == nil {
		return
	}
	t.pw.Close()
	select {
	case <-t.done:
	case <-time.After(2 * time.Second):
	}
}

func (t *wireTap) last() *headerStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

type tappedConn struct {
	net.Conn
	pw *io.PipeWriter
}

func (c *tappedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		// A tap that stopped (bad frame) must not stall the real connection.
		_, _ = c.pw.Write(b[:n])
	}
	return n, err
}
