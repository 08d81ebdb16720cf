import Firehose

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Builds the frames of the Jetstream v2 wire (`network.bsky.jetstream.subscribeEvents`,
/// PROTOCOL-v2 §2): each event's message frame from its stored v1 JSON, and the `#info` and
/// error frames.
///
/// `message(fromV1:…)` runs once per event on the v2 path. It scans the stored JSON once into
/// byte ranges (a bounds-checked skipper: strings with their escapes and UTF-8, numbers, literals,
/// nested containers up to `maxNesting`), then copies those ranges into the frame in the v2 key
/// order: `$type` first, then every other key in ascending byte order. Values are copied
/// verbatim: Contrail's stored events are already Go-escaped and their records byte-sorted at
/// every depth (PROTOCOL §3.5, §4). It allocates only the frame (nothing at all when writing into
/// a `ByteSink` with room), and never traps: any input that is not an event object as Contrail
/// stores it (compact JSON, no whitespace between tokens) gives nil.
public enum V2Frame {
  /// Containers nested inside one copied value (a record allows 128, PROTOCOL §4.3).
  public static let maxNesting = 160
  /// The longest number accepted anywhere (Contrail writes at most 24 characters).
  public static let maxNumberLength = 64
  /// Members of the object under the kind's name (Contrail writes at most 6).
  static let maxInnerMembers = 8

  // MARK: Event messages

  /// The complete `{"$type":"message","payload":{…}}` frame of a stored `commit`, `identity`,
  /// `account` or `sync` event, with `seq` = `eventSeq` and `time` = `timeUS` formatted; nil
  /// when `json` is not a compact event object of one of those kinds.
  ///
  /// A commit's payload is its `commit` object's members flattened (`cid`?, `collection`,
  /// `operation`, `record`?, `rev`, `rkey`; an omitted `collection`, `rev` or `rkey` becomes
  /// `""`, since v2 always has them) with `did`, `seq` and `time`. The other kinds carry their
  /// inner object under their kind's name, its keys sorted by their bytes, with `did`, `seq` and
  /// `time`.
  public static func message(fromV1 json: UnsafeRawBufferPointer, eventSeq: Int64, timeUS: Int64)
    -> [UInt8]?
  {
    withPlan(json, eventSeq: eventSeq, timeUS: timeUS) { plan -> [UInt8]? in
      guard let plan else { return nil }
      var counter = LengthCounter()
      plan.emit(to: &counter)
      let length = counter.count
      return [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
        var writer = PointerWriter(buffer.baseAddress!)
        plan.emit(to: &writer)
        initialized = length
      }
    }
  }

  /// `message(fromV1:eventSeq:timeUS:)`, appended to `out`; false (and `out` unchanged) when
  /// the input is not an event.
  public static func write(
    fromV1 json: UnsafeRawBufferPointer, eventSeq: Int64, timeUS: Int64, to out: inout ByteSink
  ) -> Bool {
    withPlan(json, eventSeq: eventSeq, timeUS: timeUS) { plan in
      guard let plan else { return false }
      var counter = LengthCounter()
      plan.emit(to: &counter)
      out.reserve(counter.count)
      var writer = PointerWriter(out.base + out.count)
      plan.emit(to: &writer)
      out.count += counter.count
      return true
    }
  }

  // MARK: Info and error frames

  /// `{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#info",
  /// "message":…,"name":…}}`, without `message` when it is nil (PROTOCOL-v2 §2.4).
  public static func info(name: String, message: String?) -> [UInt8] {
    var out = ByteSink(capacity: 128 + name.utf8.count + (message?.utf8.count ?? 0))
    defer { out.release() }
    out.append(
      "{\"$type\":\"message\",\"payload\":{\"$type\":\"network.bsky.jetstream.subscribeEvents#info\","
    )
    if let message {
      out.append("\"message\":")
      string(message, &out)
      out.append(UInt8(ascii: ","))
    }
    out.append("\"name\":")
    string(name, &out)
    out.append("}}")
    return out.array()
  }

  /// `{"$type":"error","error":…,"message":…}`, without `message` when it is empty
  /// (PROTOCOL-v2 §2.5).
  public static func error(name: String, message: String) -> [UInt8] {
    var out = ByteSink(capacity: 64 + name.utf8.count + message.utf8.count)
    defer { out.release() }
    out.append("{\"$type\":\"error\",\"error\":")
    string(name, &out)
    if !message.isEmpty {
      out.append(",\"message\":")
      string(message, &out)
    }
    out.append(UInt8(ascii: "}"))
    return out.array()
  }

  /// Go's escaping (`<>&` as `\u003c`…), the project's one JSON string writer.
  private static func string(_ text: String, _ out: inout ByteSink) {
    var text = text
    _ = text.withUTF8 { JSONString.write(UnsafeRawBufferPointer($0), to: &out, invalid: .replace) }
  }

  // MARK: Time

  /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: UTC, exactly 6 fractional digits (PROTOCOL-v2 §2.1), from
  /// integer microseconds. Any Int64 works: years past 9999 get more digits, years before 0 a
  /// `-` (as Go's `Format` writes them).
  public static func time(_ timeUS: Int64) -> String {
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: maxTimeLength) { buffer in
      let length = writeTime(timeUS, to: buffer.baseAddress!)
      return String(
        decoding: UnsafeBufferPointer(start: buffer.baseAddress, count: length), as: UTF8.self)
    }
  }

  /// Appends `time(timeUS)` to `out`, without making a `String`.
  public static func appendTime(_ timeUS: Int64, to out: inout ByteSink) {
    out.reserve(maxTimeLength)
    out.count += writeTime(timeUS, to: out.base + out.count)
  }

  /// Enough for any Int64: a sign, a 6-digit year and the 23 bytes after it.
  static let maxTimeLength = 32

  /// Writes the time at `p` (room for `maxTimeLength` bytes); returns its length.
  static func writeTime(_ timeUS: Int64, to p: UnsafeMutablePointer<UInt8>) -> Int {
    let microsPerDay: Int64 = 86_400_000_000
    var (days, rest) = timeUS.quotientAndRemainder(dividingBy: microsPerDay)
    if rest < 0 {
      days -= 1
      rest += microsPerDay
    }
    let (year, month, day) = CivilDate.fromDays(days)

    var i = 0
    func digits(_ value: Int64, _ count: Int) {
      var v = value
      var k = count
      while k > 0 {
        k -= 1
        p[i + k] = UInt8(truncatingIfNeeded: v % 10) &+ 48
        v /= 10
      }
      i += count
    }
    func byte(_ c: Unicode.Scalar) {
      p[i] = UInt8(ascii: c)
      i += 1
    }
    if year < 0 { byte("-") }
    let magnitude = year < 0 ? -year : year
    var yearDigits = 4
    var probe = magnitude / 10_000
    while probe > 0 {
      yearDigits += 1
      probe /= 10
    }
    digits(magnitude, yearDigits)
    byte("-")
    digits(month, 2)
    byte("-")
    digits(day, 2)
    byte("T")
    let seconds = rest / 1_000_000
    digits(seconds / 3600, 2)
    byte(":")
    digits(seconds / 60 % 60, 2)
    byte(":")
    digits(seconds % 60, 2)
    byte(".")
    digits(rest % 1_000_000, 6)
    byte("Z")
    return i
  }
}

// MARK: - The plan: what to copy, in order

/// A byte range of the input, `[start, end)`.
struct ScannedSpan {
  var start: Int
  var end: Int
}

/// One member of the inner object: its key with the quotes, and its value.
struct ScannedMember {
  var key: ScannedSpan
  var value: ScannedSpan
}

enum ScannedKind {
  case commit, identity, account, sync
}

/// Everything needed to write one frame: ranges of the input, the inner members in output
/// order, and the formatted `seq` and `time`.
struct V2Plan {
  let json: UnsafePointer<UInt8>
  let kind: ScannedKind
  let did: ScannedSpan
  /// The `time_us` number (checked to be a number only).
  var timeUS: ScannedSpan? = nil
  /// Commit: the flattened members (nil when absent).
  var cid: ScannedSpan? = nil
  var collection: ScannedSpan? = nil
  var operation = ScannedSpan(start: 0, end: 0)
  var record: ScannedSpan? = nil
  var rev: ScannedSpan? = nil
  var rkey: ScannedSpan? = nil
  /// Identity, account, sync: the inner members, sorted by key.
  var members: UnsafeMutableBufferPointer<ScannedMember>
  var memberCount = 0
  /// `seq` then `time`, formatted.
  let scratch: UnsafeMutablePointer<UInt8>
  var seqLength = 0
  var timeLength = 0

  fileprivate func emit<Out: Output>(to out: inout Out) {
    out.append(
      "{\"$type\":\"message\",\"payload\":{\"$type\":\"network.bsky.jetstream.subscribeEvents#")
    switch kind {
    case .commit:
      out.append("commit\"")
      if let cid { field(",\"cid\":", cid, &out) }
      field(",\"collection\":", collection, &out)
      field(",\"did\":", did, &out)
      field(",\"operation\":", operation, &out)
      if let record { field(",\"record\":", record, &out) }
      field(",\"rev\":", rev, &out)
      field(",\"rkey\":", rkey, &out)
      seqAndTime(&out)
    case .identity:
      out.append("identity\"")
      field(",\"did\":", did, &out)
      out.append(",\"identity\":")
      inner(&out)
      seqAndTime(&out)
    case .account:
      out.append("account\",\"account\":")
      inner(&out)
      field(",\"did\":", did, &out)
      seqAndTime(&out)
    case .sync:
      out.append("sync\"")
      field(",\"did\":", did, &out)
      out.append(",\"seq\":")
      out.append(scratch, seqLength)
      out.append(",\"sync\":")
      inner(&out)
      out.append(",\"time\":\"")
      out.append(scratch + seqLength, timeLength)
      out.append("\"}}")
    }
  }

  /// `,"key":value`, or `""` for a missing value.
  private func field<Out: Output>(_ key: StaticString, _ value: ScannedSpan?, _ out: inout Out) {
    out.append(key)
    if let value {
      out.append(json + value.start, value.end - value.start)
    } else {
      out.append("\"\"")
    }
  }

  private func seqAndTime<Out: Output>(_ out: inout Out) {
    out.append(",\"seq\":")
    out.append(scratch, seqLength)
    out.append(",\"time\":\"")
    out.append(scratch + seqLength, timeLength)
    out.append("\"}}")
  }

  private func inner<Out: Output>(_ out: inout Out) {
    out.append("{")
    for index in 0..<memberCount {
      let member = members[index]
      if index > 0 { out.append(",") }
      out.append(json + member.key.start, member.key.end - member.key.start)
      out.append(":")
      out.append(json + member.value.start, member.value.end - member.value.start)
    }
    out.append("}")
  }
}

/// Where a plan writes: a counter (to size the frame), then the frame's memory.
private protocol Output {
  mutating func append(_ pointer: UnsafePointer<UInt8>, _ count: Int)
  mutating func append(_ literal: StaticString)
}

private struct LengthCounter: Output {
  var count = 0
  mutating func append(_ pointer: UnsafePointer<UInt8>, _ count: Int) { self.count += count }
  mutating func append(_ literal: StaticString) { count += literal.utf8CodeUnitCount }
}

private struct PointerWriter: Output {
  var position: UnsafeMutablePointer<UInt8>
  init(_ start: UnsafeMutablePointer<UInt8>) { position = start }

  mutating func append(_ pointer: UnsafePointer<UInt8>, _ count: Int) {
    position.update(from: pointer, count: count)
    position += count
  }

  mutating func append(_ literal: StaticString) {
    append(literal.utf8Start, literal.utf8CodeUnitCount)
  }
}

extension V2Frame {
  /// Scans `json` into a plan (nil if it is not an event) and hands it to `body`; the plan's
  /// memory lives on the stack for the duration of the call.
  fileprivate static func withPlan<R>(
    _ json: UnsafeRawBufferPointer, eventSeq: Int64, timeUS: Int64, _ body: (V2Plan?) -> R
  ) -> R {
    withUnsafeTemporaryAllocation(of: ScannedMember.self, capacity: maxInnerMembers) { members in
      withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24 + maxTimeLength) { scratch in
        guard let base = json.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
          return body(nil)
        }
        var scanner = JSONScanner(base, json.count)
        guard var plan = scanner.plan(members: members, scratch: scratch.baseAddress!) else {
          return body(nil)
        }
        plan.seqLength = writeDecimal(eventSeq, to: plan.scratch)
        plan.timeLength = V2Frame.writeTime(timeUS, to: plan.scratch + plan.seqLength)
        return body(plan)
      }
    }
  }
}

/// Writes a decimal integer at `start` (room for 20 bytes); returns its length.
private func writeDecimal(_ value: Int64, to start: UnsafeMutablePointer<UInt8>) -> Int {
  guard value < 0 else { return ByteSink.writeDecimal(UInt64(value), to: start) }
  start[0] = UInt8(ascii: "-")
  return 1 + ByteSink.writeDecimal(value.magnitude, to: start + 1)
}
