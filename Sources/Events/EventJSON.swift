import Firehose

/// Writes the Jetstream v1 envelopes byte for byte (PROTOCOL §3): fixed key order, omitted
/// empty fields, Go's string escaping.
enum EventJSON {
  enum Operation {
    case create, update, delete
  }

  static func commit(
    did: UnsafeRawBufferPointer, timeUS: Int64, rev: UnsafeRawBufferPointer,
    operation: Operation, collection: UnsafeRawBufferPointer, rkey: UnsafeRawBufferPointer,
    record: UnsafeRawBufferPointer, cid: UnsafeRawBufferPointer?, to out: inout ByteSink
  ) {
    out.reserve(record.count + 256)
    out.append("{\"did\":")
    string(did, &out)
    out.append(",\"time_us\":")
    out.append(decimal: timeUS)
    out.append(",\"kind\":\"commit\",\"commit\":{")
    if rev.count > 0 {
      out.append("\"rev\":")
      string(rev, &out)
      out.append(UInt8(ascii: ","))
    }
    switch operation {
    case .create: out.append("\"operation\":\"create\"")
    case .update: out.append("\"operation\":\"update\"")
    case .delete: out.append("\"operation\":\"delete\"")
    }
    if collection.count > 0 {
      out.append(",\"collection\":")
      string(collection, &out)
    }
    if rkey.count > 0 {
      out.append(",\"rkey\":")
      string(rkey, &out)
    }
    if let cid {
      out.append(",\"record\":")
      out.append(record)
      out.append(",\"cid\":\"")
      CID.appendString(cid, to: &out)
      out.append(UInt8(ascii: "\""))
    }
    out.append("}}")
  }

  /// `#identity`: `{"did","time_us","kind":"identity","identity":{"did","handle"?,"seq","time"}}`;
  /// `#account`: `{…,"account":{"active","did","seq","status"?,"time"}}` (Go's field order).
  static func accountEvent(
    _ m: AccountEventMessage, time: UnsafeRawBufferPointer, timeUS: Int64, to out: inout ByteSink
  ) {
    let identity = m.kind == .identity
    out.append("{\"did\":")
    string(m.did, &out)
    out.append(",\"time_us\":")
    out.append(decimal: timeUS)
    out.append(
      identity ? ",\"kind\":\"identity\",\"identity\":{" : ",\"kind\":\"account\",\"account\":{")
    if !identity {
      out.append("\"active\":")
      out.append(m.active ? "true," : "false,")
    }
    out.append("\"did\":")
    string(m.did, &out)
    if identity, let handle = m.handle {
      out.append(",\"handle\":")
      string(handle, &out)
    }
    out.append(",\"seq\":")
    out.append(decimal: m.seq)
    if !identity, let status = m.status {
      out.append(",\"status\":")
      string(status, &out)
    }
    out.append(",\"time\":")
    string(time, &out)
    out.append("}}")
  }

  /// Envelope strings come from the relay, not the record: invalid UTF-8 is replaced as Go does.
  private static func string(_ text: UnsafeRawBufferPointer, _ out: inout ByteSink) {
    JSONString.write(text, to: &out, invalid: .replace)
  }
}
