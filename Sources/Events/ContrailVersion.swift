/// Contrail's release version: `contrail --version`, the status page, the start-up log.
public enum ContrailVersion {
  public static let string = "0.5.0"
}
