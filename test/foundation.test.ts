/** The foundation suite, run against a cold-booting daemon and a cloning one:
 * a container from a clone must behave exactly like a cold-booted one. */
import { foundationSuite } from './helpers/foundation-suite.js';

foundationSuite('cold boot', ['--no-clone'], 'cold');
foundationSuite('clone', [], 'clone');
