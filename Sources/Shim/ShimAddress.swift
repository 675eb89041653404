import Crypto
import Foundation

/// Where a shim listens, and which containers share one.
public enum ShimAddress {
    /// containerd looks for shim sockets here whatever its own state directory is.
    public static let socketDirectory = "/run/containerd/s"

    /// Pod annotations set by containerd's CRI plugin and by CRI-O.
    public static let sandboxIDAnnotations = ["io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID"]
    public static let containerTypeAnnotations = ["io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType"]

    /// containerd's own naming (runtime/v2/shim SocketAddress): the SHA-256 of
    /// "<containerd address>/<namespace>/<group>", so every shim of a pod computes the same socket.
    public static func socketAddress(containerdAddress: String, namespace: String, group: String) -> String {
        let joined = cleanJoin([containerdAddress, namespace, group])
        let digest = SHA256.hash(data: Data(joined.utf8)).map { String(format: "%02x", $0) }.joined()
        return "unix://\(socketDirectory)/\(digest)"
    }

    /// The socket path of a "unix://" address.
    public static func path(of address: String) -> String {
        address.hasPrefix("unix://") ? String(address.dropFirst("unix://".count)) : address
    }

    /// The pod a container belongs to: the CRI sandbox id from its annotations, else itself.
    public static func group(containerID: String, annotations: [String: String]) -> String {
        for key in sandboxIDAnnotations {
            if let value = annotations[key], !value.isEmpty { return value }
        }
        return containerID
    }

    /// Go's filepath.Join: joined with "/" and cleaned of empty and "." elements.
    static func cleanJoin(_ parts: [String]) -> String {
        let absolute = parts.first?.hasPrefix("/") ?? false
        var out: [Substring] = []
        for part in parts {
            for element in part.split(separator: "/", omittingEmptySubsequences: true) where element != "." {
                if element == "..", let last = out.last, last != ".." {
                    out.removeLast()
                } else if element == ".." && absolute {
                    continue
                } else {
                    out.append(element)
                }
            }
        }
        return (absolute ? "/" : "") + out.joined(separator: "/")
    }
}
