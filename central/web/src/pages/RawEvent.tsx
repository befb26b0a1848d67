import type { RawEvent } from "../api";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatTime } from "../time";
import { useApi } from "../useApi";

/** The raw MQTT message behind a reading, exactly as the gateway received it. */
export function RawEventPage({ params }: { params: URLSearchParams }) {
  const id = { gateway_id: params.get("gateway_id"), buffer_id: params.get("buffer_id"), seq: params.get("seq") };
  const complete = Boolean(id.gateway_id && id.buffer_id && id.seq);
  const raw = useApi<RawEvent>(complete ? "/api/v1/raw_event" : null, id);
  return (
    <>
      <h1>Raw message</h1>
      {!complete ? (
        <Empty>Open a raw message from the “raw” link of a reading (Device or Quality page).</Empty>
      ) : raw.error ? (
        <ErrorState error={raw.error} onRetry={raw.reload} />
      ) : raw.loading ? (
        <Loading what="the raw message" />
      ) : (
        <RawEventView raw={raw.data!} />
      )}
    </>
  );
}

export function RawEventView({ raw }: { raw: RawEvent }) {
  return (
    <>
      <dl className="facts">
        <dt>Gateway</dt>
        <dd>{raw.gateway_id}</dd>
        <dt>Buffer / seq</dt>
        <dd>
          {raw.buffer_id} / {raw.seq}
        </dd>
        <dt>Topic</dt>
        <dd data-testid="raw-topic">{raw.topic}</dd>
        <dt>Received (gateway clock)</dt>
        <dd>{formatTime(raw.received_at)}</dd>
        <dt>Uploaded to the central</dt>
        <dd>{formatTime(raw.ingested_at)}</dd>
        <dt>MQTT</dt>
        <dd>
          QoS {raw.qos}
          {raw.retained ? ", retained" : ""}
          {raw.dup ? ", dup" : ""}
        </dd>
        <dt>Decode error</dt>
        <dd className={raw.decode_error ? "warn" : ""}>{raw.decode_error ?? "none"}</dd>
      </dl>
      <h2>Payload {raw.payload_text === null ? "(binary, base64)" : raw.payload_is_json ? "(JSON, as received)" : "(text, as received)"}</h2>
      <pre className="payload" data-testid="raw-payload">
        {raw.payload_text ?? raw.payload_base64}
      </pre>
    </>
  );
}
