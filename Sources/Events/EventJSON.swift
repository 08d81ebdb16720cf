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
  /// `#account`: `{…,"account":{"active","did","seq","status"?,"time"}}` (Go's field order);
  /// `#sync`: `{…,"sync":{"blocks":{"$bytes":…},"did","rev","seq","time"}}`, Contrail's stored
  /// form (never sent on the v1 wire), its inner object in the v2 wire's key order.
  static func accountEvent(
    _ m: AccountEventMessage, time: UnsafeRawBufferPointer, timeUS: Int64, to out: inout ByteSink
  ) {
    out.reserve(m.blocks.count / 3 * 4 + 256)
    out.append("{\"did\":")
    string(m.did, &out)
    out.append(",\"time_us\":")
    out.append(decimal: timeUS)
    switch m.kind {
    case .identity: out.append(",\"kind\":\"identity\",\"identity\":{")
    case .account:
      out.append(",\"kind\":\"account\",\"account\":{\"active\":")
      out.append(m.active ? "true," : "false,")
    case .sync:
      out.append(",\"kind\":\"sync\",\"sync\":{\"blocks\":{\"$bytes\":\"")
      Multibase.appendBase64(m.blocks, to: &out)
      out.append("\"},")
    }
    out.append("\"did\":")
    string(m.did, &out)
    if m.kind == .identity, let handle = m.handle {
      out.append(",\"handle\":")
      string(handle, &out)
    }
    if m.kind == .sync {
      out.append(",\"rev\":")
      string(m.rev, &out)
    }
    out.append(",\"seq\":")
    out.append(decimal: m.seq)
    if m.kind == .account, let status = m.status {
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
