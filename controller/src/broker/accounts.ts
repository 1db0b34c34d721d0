/**
 * Per-node broker accounts and ACLs. Two implementations: the embedded aedes broker (in-memory table
 * checked in its authenticate/authorize hooks) and an external Mosquitto (dynamic-security plugin).
 * ACL topics come from schemas' nodeAcl(), never written by hand.
 */
export interface NodeAccountSpec {
  nodeId: string;
  communeId: string;
  zoneId: string;
  /** Plain secret when (re)provisioning; omitted when only the zone/ACL changes. */
  password?: string;
}

export interface BrokerAccounts {
  /** Create or update a node's account and ACL. */
  upsertNode(spec: NodeAccountSpec): Promise<void>;
  removeNode(nodeId: string): Promise<void>;
  /** Drop the node's current connection (it reconnects and resubscribes under its new ACL). */
  disconnectNode(nodeId: string): Promise<void>;
}
