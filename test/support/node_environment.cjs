// Jest's node environment runs every module in a vm context but hands it the host's structuredClone,
// whose results are host-realm objects. oidc-provider clones client metadata with structuredClone and
// then checks `value.constructor === Object` — true in production, false under jest. This environment
// gives the sandbox a structuredClone whose plain objects and arrays belong to the sandbox realm.
const { TestEnvironment } = require('jest-environment-node');

class SameRealmCloneEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    const sandbox = this.global;
    const hostClone = globalThis.structuredClone;
    const toSandbox = (value) => {
      if (Array.isArray(value)) return sandbox.Array.from(value, toSandbox);
      if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
        const copy = new sandbox.Object();
        for (const [key, item] of Object.entries(value)) copy[key] = toSandbox(item);
        return copy;
      }
      return value;
    };
    sandbox.structuredClone = (value, options) => toSandbox(hostClone(value, options));
  }
}

module.exports = SameRealmCloneEnvironment;
