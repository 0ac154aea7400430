// `node --import ./hide-native.mjs`: makes @tensorflow/tfjs-node(-gpu) unresolvable in this process,
// so engine.test.ts checks the "no native package" paths whether or not one is installed.
import { register } from 'node:module';

const hook = `export async function resolve(specifier, context, next) {
  if (/^@tensorflow\\/tfjs-node(-gpu)?$/.test(specifier)) {
    const err = new Error("Cannot find package '" + specifier + "' (hidden by test/model/hide-native.mjs)");
    err.code = 'ERR_MODULE_NOT_FOUND';
    throw err;
  }
  return next(specifier, context);
}`;
register('data:text/javascript,' + encodeURIComponent(hook));
