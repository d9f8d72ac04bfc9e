// interop: an independent NATS client (the official nats.go, from Debian's sources) that the
// integration tests run against the same server as natbus. It speaks only the wire contract in
// tests/wire_vectors.json, never natbus' code. Every command prints what it did on stdout, one
// line per fact, and exits non-zero when a check fails.
//
//	interop publish-read  URL PREFIX VECTORS          publish every "read" vector to PREFIX.<name> (JetStream)
//	interop check-write   URL PREFIX VECTORS          read PREFIX.<name> from the stream, check each "write" vector
//	interop consume       URL STREAM DURABLE pull|push COUNT [QUEUE]
//	                                                  bind to an existing durable, take COUNT messages, ack each
//	interop request       URL SUBJECT                 send a request with x-reply-on / x-final-to, await both replies
//	interop publish-id    URL SUBJECT MSGID           JetStream publish with Nats-Msg-Id, print the PubAck
//	interop service       URL NAME SUBJECT COUNT      discover the service NAME ($SRV.PING/INFO/STATS, checked
//	                                                  against the ADR-32 v1 JSON), send COUNT requests to
//	                                                  SUBJECT (every 10th "missing": a 404 service error),
//	                                                  check that STATS of all instances add up
//	interop kv-write      URL BUCKET                  create the bucket (history 10) and write a fixed script of
//	                                                  puts, a delete, a create and a purge; check that a stale
//	                                                  update and a create on a live key are refused
//	interop kv-read       URL BUCKET KEY...           bind; print Get and History of each KEY, and Keys
//	interop kv-watch      URL BUCKET COUNT            watch every key; at the end of the current values put
//	                                                  "ready"; print COUNT changes from there
//	interop obj-put       URL BUCKET NAME SIZE        create the object store and put SIZE bytes of the test
//	                                                  pattern (byte i = (31 i + 7) mod 251) as NAME
//	interop obj-get       URL BUCKET NAME             bind, read NAME (nats.go checks the digest), check the
//	                                                  pattern; print its info and a SHA-256 Go computed itself
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

type vectorFile struct {
	Version int               `json:"version"`
	Formats map[string]string `json:"formats"`
	Write   []vector          `json:"write"`
	Read    []vector          `json:"read"`
}

type payloadSpec struct {
	JSON json.RawMessage `json:"json"`
	Text *string         `json:"text"`
	Hex  *string         `json:"hex"`
}

type vector struct {
	Name    string      `json:"name"`
	Headers [][2]string `json:"headers"`
	Payload payloadSpec `json:"payload"`
	Gzip    bool        `json:"gzip"`
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func must(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func loadVectors(path string) vectorFile {
	raw, err := os.ReadFile(path)
	must(err, "read vectors")
	var v vectorFile
	must(json.Unmarshal(raw, &v), "parse vectors")
	if v.Version != 1 {
		fail("vectors version %d, this program knows 1", v.Version)
	}
	return v
}

func (p payloadSpec) bytes() []byte {
	switch {
	case p.Text != nil:
		return []byte(*p.Text)
	case p.Hex != nil:
		b, err := hex.DecodeString(*p.Hex)
		must(err, "hex payload")
		return b
	default:
		return []byte(p.JSON)
	}
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, err := w.Write(b)
	must(err, "gzip")
	must(w.Close(), "gzip")
	return buf.Bytes()
}

func gunzip(b []byte) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func connect(url string) (*nats.Conn, nats.JetStreamContext) {
	nc, err := nats.Connect(url, nats.Name("interop-go"), nats.Timeout(5*time.Second))
	must(err, "connect "+url)
	js, err := nc.JetStream(nats.MaxWait(5 * time.Second))
	must(err, "jetstream")
	return nc, js
}

// publish-read: the messages a Python natbus service (or any other client) sends.
func publishRead(url, prefix, path string) {
	vf := loadVectors(path)
	nc, js := connect(url)
	defer nc.Close()
	for _, v := range vf.Read {
		m := nats.NewMsg(prefix + "." + v.Name)
		for _, h := range v.Headers {
			m.Header[h[0]] = append(m.Header[h[0]], h[1]) // exactly as written: no canonical case
		}
		data := v.Payload.bytes()
		if v.Gzip {
			data = gzipBytes(data)
		}
		m.Data = data
		ack, err := js.PublishMsg(m)
		must(err, "publish "+v.Name)
		fmt.Printf("published %s seq=%d\n", v.Name, ack.Sequence)
	}
	fmt.Printf("done %d\n", len(vf.Read))
}

// check-write: what natbus wrote, checked header by header against the vectors.
func checkWrite(url, prefix, path string) {
	vf := loadVectors(path)
	nc, js := connect(url)
	defer nc.Close()
	formats := map[string]*regexp.Regexp{}
	for k, re := range vf.Formats {
		formats[k] = regexp.MustCompile(re)
	}
	byName := map[string]vector{}
	for _, v := range vf.Write {
		byName[v.Name] = v
	}
	sub, err := js.SubscribeSync(prefix+".>", nats.OrderedConsumer(), nats.DeliverAll())
	must(err, "ordered consumer")
	failures := 0
	for i := 0; i < len(vf.Write); i++ {
		msg, err := sub.NextMsg(10 * time.Second)
		must(err, fmt.Sprintf("message %d of %d", i+1, len(vf.Write)))
		name := msg.Subject[len(prefix)+1:]
		v, ok := byName[name]
		if !ok {
			fail("unexpected subject %s", msg.Subject)
		}
		problems := checkMessage(v, msg, formats)
		if len(problems) == 0 {
			fmt.Printf("ok %s\n", name)
		} else {
			failures++
			fmt.Printf("FAIL %s: %s\n", name, strings.Join(problems, "; "))
		}
	}
	if failures > 0 {
		os.Exit(1)
	}
	fmt.Printf("checked %d\n", len(vf.Write))
}

func checkMessage(v vector, msg *nats.Msg, formats map[string]*regexp.Regexp) []string {
	var problems []string
	want := map[string]string{}
	for _, h := range v.Headers {
		want[h[0]] = h[1]
	}
	for name, values := range msg.Header {
		exp, ok := want[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("unexpected header %q=%q", name, values))
			continue
		}
		if len(values) != 1 {
			problems = append(problems, fmt.Sprintf("%s has %d values", name, len(values)))
			continue
		}
		if strings.HasPrefix(exp, "@") {
			re := formats[exp[1:]]
			if re == nil || !re.MatchString(values[0]) {
				problems = append(problems, fmt.Sprintf("%s=%q does not match %s", name, values[0], exp))
			}
		} else if values[0] != exp {
			problems = append(problems, fmt.Sprintf("%s=%q, want %q", name, values[0], exp))
		}
	}
	for name := range want {
		if _, ok := msg.Header[name]; !ok {
			problems = append(problems, fmt.Sprintf("missing header %s (names are matched exactly)", name))
		}
	}
	// traceparent carries x-trace-id's trace id (dashes removed).
	if tp, ok := msg.Header["traceparent"]; ok && len(tp) == 1 && len(tp[0]) == 55 {
		trace := strings.ReplaceAll(msg.Header.Get("x-trace-id"), "-", "")
		if tp[0][3:35] != trace {
			problems = append(problems, fmt.Sprintf("traceparent %q does not carry x-trace-id's trace id %q", tp[0], trace))
		}
	}
	data := msg.Data
	if v.Gzip {
		if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
			problems = append(problems, "payload is not gzip")
		}
		out, err := gunzip(data)
		if err != nil {
			return append(problems, "gunzip: "+err.Error())
		}
		data = out
	}
	if v.Payload.JSON != nil {
		var got, exp interface{}
		if err := json.Unmarshal(data, &got); err != nil {
			return append(problems, "payload is not JSON: "+err.Error())
		}
		must(json.Unmarshal(v.Payload.JSON, &exp), "vector JSON")
		if !reflect.DeepEqual(got, exp) {
			problems = append(problems, fmt.Sprintf("payload %s, want %s", data, v.Payload.JSON))
		}
	} else if !bytes.Equal(data, v.Payload.bytes()) {
		problems = append(problems, fmt.Sprintf("payload %x, want %x", data, v.Payload.bytes()))
	}
	return problems
}

// consume: another client on a durable natbus created; it binds, never creates or changes it.
func consume(url, stream, durable, kind string, count int, queue string) {
	nc, js := connect(url)
	defer nc.Close()
	before, err := js.ConsumerInfo(stream, durable)
	must(err, "consumer info")
	fmt.Printf("consumer created=%s\n", before.Created.UTC().Format(time.RFC3339Nano))
	var msgs []*nats.Msg
	deadline := time.Now().Add(15 * time.Second)
	switch kind {
	case "pull":
		sub, err := js.PullSubscribe(before.Config.FilterSubject, durable, nats.Bind(stream, durable))
		must(err, "bind pull")
		for len(msgs) < count && time.Now().Before(deadline) {
			batch, err := sub.Fetch(count-len(msgs), nats.MaxWait(2*time.Second))
			if err != nil && err != nats.ErrTimeout {
				must(err, "fetch")
			}
			msgs = append(msgs, batch...)
		}
	case "push":
		var sub *nats.Subscription
		if queue != "" {
			sub, err = js.QueueSubscribeSync(before.Config.FilterSubject, queue, nats.Bind(stream, durable))
		} else {
			sub, err = js.SubscribeSync(before.Config.FilterSubject, nats.Bind(stream, durable))
		}
		must(err, "bind push")
		for len(msgs) < count && time.Now().Before(deadline) {
			m, err := sub.NextMsg(2 * time.Second)
			if err == nats.ErrTimeout {
				continue
			}
			must(err, "next")
			msgs = append(msgs, m)
		}
		// Stop delivery to this subscriber without touching the durable.
		must(sub.Unsubscribe(), "unsubscribe")
	default:
		fail("kind %q: pull or push", kind)
	}
	if len(msgs) < count {
		fail("got %d of %d messages", len(msgs), count)
	}
	for _, m := range msgs {
		md, err := m.Metadata()
		must(err, "metadata")
		must(m.AckSync(), "ack")
		fmt.Printf("got seq=%d delivered=%d data=%s\n", md.Sequence.Stream, md.NumDelivered, m.Data)
	}
	after, err := js.ConsumerInfo(stream, durable)
	must(err, "consumer info")
	if !after.Created.Equal(before.Created) {
		fail("the durable was recreated while Go used it")
	}
	fmt.Printf("done acked=%d ack_pending=%d\n", len(msgs), after.NumAckPending)
}

// request: a Python-style request; natbus answers progress on x-reply-on, the end on x-final-to.
func request(url, subject string) {
	nc, js := connect(url)
	defer nc.Close()
	progress, err := nc.SubscribeSync("interop.replies.progress")
	must(err, "subscribe progress")
	final, err := nc.SubscribeSync("interop.replies.final")
	must(err, "subscribe final")
	must(nc.Flush(), "flush")
	m := nats.NewMsg(subject)
	m.Header["content-type"] = []string{"application/json"}
	m.Header["x-trace-id"] = []string{"4bf92f35-77b3-4da6-a3ce-929d0e0e4736"}
	m.Header["x-correlation-id"] = []string{"go-corr-1"}
	m.Header["x-sender"] = []string{"interop-go"}
	m.Header["x-sent-at"] = []string{time.Now().UTC().Format("2006-01-02T15:04:05.000+00:00")}
	m.Header["x-message-type"] = []string{"resize"}
	m.Header["x-reply-on"] = []string{"interop.replies.progress"}
	m.Header["x-final-to"] = []string{"interop.replies.final"}
	m.Data = []byte(`{"job": 1}`)
	_, err = js.PublishMsg(m)
	must(err, "publish request")
	fmt.Println("requested")
	for _, r := range []struct {
		name string
		sub  *nats.Subscription
	}{{"progress", progress}, {"final", final}} {
		msg, err := r.sub.NextMsg(15 * time.Second)
		must(err, r.name+" reply")
		for h, want := range map[string]string{"x-correlation-id": "go-corr-1", "x-trace-id": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
			"x-message-type": "resize", "content-type": "application/json"} {
			if got := msg.Header.Get(h); got != want {
				fail("%s reply: %s=%q, want %q", r.name, h, got, want)
			}
		}
		var body map[string]interface{}
		must(json.Unmarshal(msg.Data, &body), r.name+" reply JSON")
		fmt.Printf("reply %s correlation=%s data=%s\n", r.name, msg.Header.Get("x-correlation-id"), msg.Data)
	}
}

func publishID(url, subject, id string) {
	nc, js := connect(url)
	defer nc.Close()
	ack, err := js.Publish(subject, []byte("from go"), nats.MsgId(id))
	must(err, "publish")
	fmt.Printf("puback stream=%s seq=%d duplicate=%t\n", ack.Stream, ack.Sequence, ack.Duplicate)
}

// The keys of ADR-32 v1 responses, as current nats.go micro writes them (Debian's nats.go 1.22
// micro is an earlier draft, so the check is written out here).
var (
	identityKeys      = []string{"type", "name", "id", "version", "metadata"}
	infoKeys          = append(append([]string{}, identityKeys...), "description", "endpoints")
	statsKeys         = append(append([]string{}, identityKeys...), "started", "endpoints")
	endpointInfoKeys  = []string{"name", "subject", "queue_group", "metadata"}
	endpointStatsKeys = []string{"name", "subject", "queue_group", "num_requests", "num_errors", "last_error", "processing_time",
		"average_processing_time"}
	semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$`)
)

// checkKeys fails unless `raw` is a JSON object with exactly `want` as keys (`optional` may be there).
func checkKeys(what string, raw []byte, want []string, optional ...string) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	must(json.Unmarshal(raw, &m), what+" JSON")
	for _, k := range want {
		if _, ok := m[k]; !ok {
			fail("%s: no %q in %s", what, k, raw)
		}
	}
	allowed := map[string]bool{}
	for _, k := range append(append([]string{}, want...), optional...) {
		allowed[k] = true
	}
	for k := range m {
		if !allowed[k] {
			fail("%s: unexpected key %q in %s", what, k, raw)
		}
	}
	return m
}

type identity struct {
	Type     string            `json:"type"`
	Name     string            `json:"name"`
	ID       string            `json:"id"`
	Version  string            `json:"version"`
	Metadata map[string]string `json:"metadata"`
}

func checkIdentity(what string, raw []byte, keys []string, wantType, name string) identity {
	m := checkKeys(what, raw, keys)
	var id identity
	must(json.Unmarshal(raw, &id), what+" identity")
	if id.Type != wantType || id.Name != name || id.ID == "" || !semver.MatchString(id.Version) || id.Metadata == nil ||
		string(m["metadata"])[0] != '{' {
		fail("%s: bad identity %s", what, raw)
	}
	return id
}

func service(url, name, subject string, count int) {
	nc, err := nats.Connect(url)
	must(err, "connect")
	defer nc.Close()

	// Every instance answers a PING to the name.
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	must(err, "subscribe inbox")
	must(nc.PublishRequest("$SRV.PING."+name, inbox, nil), "ping")
	var ids []string
	for {
		m, err := sub.NextMsg(time.Second)
		if err != nil {
			break
		}
		id := checkIdentity("ping", m.Data, identityKeys, "io.nats.micro.v1.ping_response", name)
		fmt.Printf("ping id=%s version=%s metadata=%v\n", id.ID, id.Version, id.Metadata)
		ids = append(ids, id.ID)
	}
	fmt.Printf("instances %d\n", len(ids))
	if len(ids) == 0 {
		fail("no instance of %s answered", name)
	}
	for _, id := range ids {
		m, err := nc.Request("$SRV.INFO."+name+"."+id, nil, 5*time.Second)
		must(err, "info")
		checkIdentity("info", m.Data, infoKeys, "io.nats.micro.v1.info_response", name)
		var info struct {
			Endpoints []json.RawMessage `json:"endpoints"`
		}
		must(json.Unmarshal(m.Data, &info), "info endpoints")
		var eps []string
		for _, raw := range info.Endpoints {
			checkKeys("info endpoint", raw, endpointInfoKeys)
			var ep struct {
				Name, Subject string
				QueueGroup    string `json:"queue_group"`
			}
			must(json.Unmarshal(raw, &ep), "info endpoint")
			eps = append(eps, ep.Name+":"+ep.Subject+":"+ep.QueueGroup)
		}
		fmt.Printf("info id=%s endpoints=%s\n", id, strings.Join(eps, ","))
	}

	errors := 0
	for i := 0; i < count; i++ {
		data := fmt.Sprintf("item-%d", i)
		if i%10 == 9 {
			data = "missing"
		}
		m, err := nc.Request(subject, []byte(data), 5*time.Second)
		must(err, "request")
		text, code := m.Header.Get("Nats-Service-Error"), m.Header.Get("Nats-Service-Error-Code")
		if data == "missing" {
			if code != "404" || text == "" {
				fail("request %q: want a 404 service error, got code=%q text=%q", data, code, text)
			}
			errors++
		} else if code != "" || !bytes.Contains(m.Data, []byte(data)) {
			fail("request %q: got code=%q data=%s", data, code, m.Data)
		}
	}
	fmt.Printf("requests sent=%d errors=%d\n", count, errors)

	total, totalErrors := 0, 0
	for _, id := range ids {
		m, err := nc.Request("$SRV.STATS."+name+"."+id, nil, 5*time.Second)
		must(err, "stats")
		checkIdentity("stats", m.Data, statsKeys, "io.nats.micro.v1.stats_response", name)
		var st struct {
			Started   time.Time         `json:"started"`
			Endpoints []json.RawMessage `json:"endpoints"`
		}
		must(json.Unmarshal(m.Data, &st), "stats")
		if st.Started.IsZero() || time.Since(st.Started) > time.Hour {
			fail("stats: started %v", st.Started)
		}
		for _, raw := range st.Endpoints {
			checkKeys("stats endpoint", raw, endpointStatsKeys, "data")
			var ep struct {
				Subject     string        `json:"subject"`
				NumRequests int           `json:"num_requests"`
				NumErrors   int           `json:"num_errors"`
				LastError   string        `json:"last_error"`
				Processing  time.Duration `json:"processing_time"`
				Average     time.Duration `json:"average_processing_time"`
			}
			must(json.Unmarshal(raw, &ep), "stats endpoint")
			if ep.Subject != subject {
				continue
			}
			if ep.NumRequests > 0 && (ep.Processing <= 0 || ep.Average != ep.Processing/time.Duration(ep.NumRequests)) {
				fail("stats endpoint: processing %v average %v over %d", ep.Processing, ep.Average, ep.NumRequests)
			}
			if ep.NumErrors > 0 && !strings.HasPrefix(ep.LastError, "404:") {
				fail("stats endpoint: last_error %q", ep.LastError)
			}
			fmt.Printf("stats id=%s num_requests=%d num_errors=%d last_error=%q\n", id, ep.NumRequests, ep.NumErrors, ep.LastError)
			total += ep.NumRequests
			totalErrors += ep.NumErrors
		}
	}
	fmt.Printf("stats total num_requests=%d num_errors=%d\n", total, totalErrors)
	if total != count || totalErrors != errors {
		fail("STATS says %d requests and %d errors, %d and %d were sent", total, totalErrors, count, errors)
	}
}

func kvOp(op nats.KeyValueOp) string {
	switch op {
	case nats.KeyValueDelete:
		return "del"
	case nats.KeyValuePurge:
		return "purge"
	default:
		return "put"
	}
}

func printEntry(what string, e nats.KeyValueEntry) {
	fmt.Printf("%s key=%s rev=%d op=%s value=%s\n", what, e.Key(), e.Revision(), kvOp(e.Operation()), e.Value())
}

func kvWrite(url, bucket string) {
	nc, js := connect(url)
	defer nc.Close()
	kv, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: bucket, History: 10})
	must(err, "create bucket")
	put := func(k, v string) {
		rev, err := kv.PutString(k, v)
		must(err, "put "+k)
		fmt.Printf("put key=%s rev=%d value=%s\n", k, rev, v)
	}
	put("go.a", "1")
	put("go.b", "two")
	put("go.a", "3")
	must(kv.Delete("go.b"), "delete go.b")
	fmt.Printf("del key=go.b\n")
	put("cfg/x=1.y", "z")
	rev, err := kv.Create("go.c", []byte("c"))
	must(err, "create go.c")
	fmt.Printf("create key=go.c rev=%d\n", rev)
	if _, err := kv.Update("go.a", []byte("stale"), 1); err == nil {
		fail("update of go.a at revision 1 was accepted")
	}
	fmt.Printf("update-stale refused\n")
	if _, err := kv.Create("go.c", []byte("again")); err == nil {
		fail("create of the live key go.c was accepted")
	}
	fmt.Printf("create-live refused\n")
	put("go.d", "d")
	must(kv.Purge("go.d"), "purge go.d")
	fmt.Printf("purge key=go.d\n")
}

func kvRead(url, bucket string, keys []string) {
	nc, js := connect(url)
	defer nc.Close()
	kv, err := js.KeyValue(bucket)
	must(err, "bind bucket")
	for _, k := range keys {
		e, err := kv.Get(k)
		if err == nats.ErrKeyNotFound {
			fmt.Printf("get key=%s none\n", k)
		} else {
			must(err, "get "+k)
			printEntry("get", e)
		}
		h, err := kv.History(k)
		if err == nats.ErrKeyNotFound {
			fmt.Printf("history key=%s none\n", k)
			continue
		}
		must(err, "history "+k)
		parts := []string{}
		for _, e := range h {
			parts = append(parts, fmt.Sprintf("%d:%s:%s", e.Revision(), kvOp(e.Operation()), e.Value()))
		}
		fmt.Printf("history key=%s %s\n", k, strings.Join(parts, ","))
	}
	ks, err := kv.Keys()
	if err != nats.ErrNoKeysFound {
		must(err, "keys")
	}
	sort.Strings(ks)
	fmt.Printf("keys %s\n", strings.Join(ks, ","))
}

func kvWatch(url, bucket string, count int) {
	nc, js := connect(url)
	defer nc.Close()
	kv, err := js.KeyValue(bucket)
	must(err, "bind bucket")
	w, err := kv.WatchAll()
	must(err, "watch")
	defer w.Stop()
	seen := -1
	timeout := time.After(30 * time.Second)
	for seen < count {
		select {
		case e := <-w.Updates():
			if e == nil {
				fmt.Printf("watch init-done\n")
				_, err := kv.PutString("ready", "go")
				must(err, "put ready")
				seen = 0
				continue
			}
			if seen < 0 {
				printEntry("initial", e)
				continue
			}
			printEntry("watch", e)
			seen++
		case <-timeout:
			fail("watch: %d of %d changes in 30 s", seen, count)
		}
	}
}

func objPattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((31*i + 7) % 251)
	}
	return b
}

func objPut(url, bucket, name string, size int) {
	nc, js := connect(url)
	defer nc.Close()
	obs, err := js.CreateObjectStore(&nats.ObjectStoreConfig{Bucket: bucket})
	must(err, "create object store")
	info, err := obs.PutBytes(name, objPattern(size))
	must(err, "put "+name)
	fmt.Printf("put name=%s size=%d chunks=%d digest=%s\n", info.Name, info.Size, info.Chunks, info.Digest)
}

func objGet(url, bucket, name string) {
	nc, js := connect(url)
	defer nc.Close()
	obs, err := js.ObjectStore(bucket)
	must(err, "bind object store")
	info, err := obs.GetInfo(name)
	must(err, "info "+name)
	data, err := obs.GetBytes(name)
	must(err, "get "+name)
	if !bytes.Equal(data, objPattern(len(data))) {
		fail("get %s: the bytes are not the test pattern", name)
	}
	sum := sha256.Sum256(data)
	fmt.Printf("info name=%s size=%d chunks=%d digest=%s\n", info.Name, info.Size, info.Chunks, info.Digest)
	fmt.Printf("get size=%d sha256=SHA-256=%s pattern ok\n", len(data), base64.URLEncoding.EncodeToString(sum[:]))
}

func main() {
	a := os.Args
	if len(a) < 3 {
		fail("usage: interop COMMAND URL ...")
	}
	switch {
	case a[1] == "publish-read" && len(a) == 5:
		publishRead(a[2], a[3], a[4])
	case a[1] == "check-write" && len(a) == 5:
		checkWrite(a[2], a[3], a[4])
	case a[1] == "consume" && (len(a) == 7 || len(a) == 8):
		n, err := strconv.Atoi(a[6])
		must(err, "COUNT")
		queue := ""
		if len(a) == 8 {
			queue = a[7]
		}
		consume(a[2], a[3], a[4], a[5], n, queue)
	case a[1] == "request" && len(a) == 4:
		request(a[2], a[3])
	case a[1] == "publish-id" && len(a) == 5:
		publishID(a[2], a[3], a[4])
	case a[1] == "service" && len(a) == 6:
		n, err := strconv.Atoi(a[5])
		must(err, "COUNT")
		service(a[2], a[3], a[4], n)
	case a[1] == "kv-write" && len(a) == 4:
		kvWrite(a[2], a[3])
	case a[1] == "kv-read" && len(a) >= 5:
		kvRead(a[2], a[3], a[4:])
	case a[1] == "obj-put" && len(a) == 6:
		n, err := strconv.Atoi(a[5])
		must(err, "SIZE")
		objPut(a[2], a[3], a[4], n)
	case a[1] == "obj-get" && len(a) == 5:
		objGet(a[2], a[3], a[4])
	case a[1] == "kv-watch" && len(a) == 5:
		n, err := strconv.Atoi(a[4])
		must(err, "COUNT")
		kvWatch(a[2], a[3], n)
	default:
		fail("bad command line: %v", a[1:])
	}
}
