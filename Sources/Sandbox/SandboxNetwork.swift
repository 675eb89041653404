import AgentAPI
import OCI
import PodNetwork

extension PodNetwork {
    /// What the agent needs to make the guest's network match the pod namespace.
    func agentRequest() -> Cocoon_Agent_V1_ConfigureNetworkRequest {
        .with { r in
            r.interfaces = interfaces.map { iface in
                .with {
                    $0.name = iface.name
                    $0.mac = iface.mac.description
                    $0.mtu = iface.mtu
                    $0.addresses = iface.addresses.map(\.description)
                }
            }
            r.routes = routes.map { carried in
                .with {
                    $0.family = carried.route.family == .inet ? 4 : 6
                    $0.destination = carried.route.destination?.description ?? ""
                    $0.gateway = carried.route.gateway?.description ?? ""
                    $0.source = carried.route.preferredSource?.description ?? ""
                    $0.device = carried.device
                    $0.scope = UInt32(carried.route.scope)
                    $0.metric = carried.route.priority ?? 0
                }
            }
            r.neighbors = neighbours.map { n in
                .with {
                    $0.address = n.address.description
                    $0.mac = n.mac.description
                    $0.device = n.device
                }
            }
        }
    }
}

extension Sandbox.BootOptions {
    /// The network namespace a VM takes over: the one config.json names by path (CNI's for a pod).
    /// A network namespace without a path, or none, means no NIC: the container gets loopback, as runc
    /// would give it in an empty namespace (or the host's network, which a VM cannot share).
    public static func networkNamespace(of spec: OCI.Spec) -> String? {
        guard let path = spec.linux?.namespaces?.first(where: { $0.type == .network })?.path, !path.isEmpty else { return nil }
        return path
    }
}
