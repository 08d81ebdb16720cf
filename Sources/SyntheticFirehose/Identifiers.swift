import Firehose

/// atproto identifiers for generated data: TIDs (record keys and revisions), DIDs and
/// RFC 3339 timestamps, all from integers.
public enum Identifiers {
  /// A TID: 53 bits of microseconds and a 10-bit clock id, as 13 sortable base32 characters.
  public static func tid(microseconds: Int64, clockID: Int) -> String {
    let value = (UInt64(microseconds) << 10 | UInt64(clockID & 0x3FF)) & 0x7FFF_FFFF_FFFF_FFFF
    var chars = [UInt8](repeating: 0, count: 13)
    for i in 0..<13 {
      chars[12 - i] = Base32.sortable.digit(value >> UInt64(5 * i))
    }
    return String(decoding: chars, as: UTF8.self)
  }

  /// A `did:plc:` identifier: 24 base32 characters derived from `value`.
  public static func plcDID(_ value: UInt64, _ extra: UInt64) -> String {
    var chars: [UInt8] = []
    var bits = value
    for i in 0..<24 {
      if i == 12 { bits = extra }
      chars.append(Base32.lowercase.digit(bits))
      bits >>= 5
    }
    return "did:plc:" + String(decoding: chars, as: UTF8.self)
  }

  /// `YYYY-MM-DDThh:mm:ss.mmmZ` for microseconds since the Unix epoch.
  public static func timestamp(microseconds: Int64) -> String {
    let millis = microseconds / 1000
    let seconds = millis / 1000
    let days = seconds / 86_400
    let secondOfDay = seconds % 86_400
    let (year, month, day) = CivilDate.fromDays(days)
    func pad(_ v: Int64, _ width: Int) -> String {
      let s = String(v)
      return String(repeating: "0", count: max(0, width - s.count)) + s
    }
    return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):"
      + "\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2)).\(pad(millis % 1000, 3))Z"
  }

}
