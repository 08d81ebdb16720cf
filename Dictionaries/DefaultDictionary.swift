/// Contrail's default zstd dictionary (`contrail-default.zdict`, ID 20261122), compiled into the
/// binary so that `serve` needs no file beside it.
public enum DefaultDictionary {
  /// The dictionary's bytes, exactly as in `Dictionaries/contrail-default.zdict`.
  public static var bytes: [UInt8] { PackageResources.contrail_default_zdict }

  /// Its dictionary ID.
  public static let id: UInt32 = 20_261_122
}
