/**
 * Loads the vendored protos once. The gRPC service definitions come from proto-loader (as grpc-js
 * expects); the google.rpc messages for `grpc-status-details-bin` are encoded with protobufjs, the
 * library proto-loader itself is built on.
 */
import { join } from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

import { packageRoot } from '../util/package-root.js';

export const PROTO_DIR = `${join(packageRoot(), 'proto')}/`;

/** Options shared by the server and every client we build: snake_case fields, 64-bit ints as strings. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

let packageDefinition: protoLoader.PackageDefinition | undefined;

export function loadCriPackageDefinition(): protoLoader.PackageDefinition {
  packageDefinition ??= protoLoader.loadSync(['runtime/v1/api.proto'], PROTO_LOADER_OPTIONS);
  return packageDefinition;
}

let rpcRoot: protobuf.Root | undefined;

/** google.rpc.Status, ErrorInfo, PreconditionFailure… as protobufjs types. */
export function loadRpcRoot(): protobuf.Root {
  if (rpcRoot === undefined) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : `${PROTO_DIR}${target}`);
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
    rpcRoot = root;
  }
  return rpcRoot;
}
