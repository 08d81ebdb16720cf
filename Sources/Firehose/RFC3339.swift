/// Validates relay timestamps the way Go's `time.Parse(time.RFC3339, …)` accepts them
/// (PROTOCOL §5.3): `YYYY-MM-DDThh:mm:ss[.digits](Z|±hh:mm)` with every field in range.
public enum RFC3339 {
  public static func isValid(_ s: UnsafeRawBufferPointer) -> Bool {
    let n = s.count
    guard n >= 20 else { return false }
    func number(_ at: Int, _ digits: Int) -> Int? {
      var v = 0
      for i in at..<(at + digits) {
        let c = s[i]
        guard c >= 0x30 && c <= 0x39 else { return nil }
        v = v * 10 + Int(c - 0x30)
      }
      return v
    }
    guard let year = number(0, 4), s[4] == UInt8(ascii: "-"),
      let month = number(5, 2), s[7] == UInt8(ascii: "-"),
      let day = number(8, 2), s[10] == UInt8(ascii: "T"),
      let hour = number(11, 2), s[13] == UInt8(ascii: ":"),
      let minute = number(14, 2), s[16] == UInt8(ascii: ":"),
      let second = number(17, 2)
    else { return false }
    guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
      hour < 24, minute < 60, second < 60
    else { return false }
    var i = 19
    if s[i] == UInt8(ascii: ".") {
      i += 1
      let digitsStart = i
      while i < n, s[i] >= 0x30, s[i] <= 0x39 { i += 1 }
      guard i > digitsStart else { return false }
    }
    guard i < n else { return false }
    if s[i] == UInt8(ascii: "Z") { return i + 1 == n }
    guard s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-"), i + 6 == n,
      let offsetHours = number(i + 1, 2), s[i + 3] == UInt8(ascii: ":"),
      let offsetMinutes = number(i + 4, 2)
    else { return false }
    return offsetHours < 24 && offsetMinutes < 60
  }

  private static func daysIn(month: Int, year: Int) -> Int {
    switch month {
    case 2: return (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
  }
}
