/** The pure policy core: parse → scope → identity → decide. Imports only src/domain. */
export * from './types.js';
export { parsePolicy, isValidIdentityPrefix } from './parse-policy.js';
export { requirementsFor, policyIdentity, policyNamespaces, type ScopedRequirements } from './scope.js';
export { matchesSignedIdentity, describeSignedIdentity } from './identity.js';
export {
  decide,
  describeRequirement,
  describeTrouble,
  locationLabel,
  summarizeRejections,
  troublesAppendix,
  NO_SIGNATURE_TEXT,
  EMPTY_REQUIREMENTS_TEXT,
  SIGSTORE_UNSUPPORTED_TEXT,
  type DecideInput,
  type RequirementChecks,
} from './decide.js';
