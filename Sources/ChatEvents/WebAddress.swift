public import Foundation

/// An `http` or `https` URL with a host: what the connector calls or downloads (8x8's API, a
/// JWK endpoint, an attachment's file). `localhost:8090` is not one (it reads as the scheme
/// "localhost"), nor is an `http+unix` socket address.
public enum WebAddress {
    public static func parse(_ text: String) -> URL? {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              url.host?.isEmpty == false else { return nil }
        return url
    }
}
