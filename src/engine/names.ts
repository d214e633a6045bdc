import { randomInt } from 'node:crypto';

const adjectives = ['agile', 'bold', 'brave', 'calm', 'clever', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'keen', 'lucid', 'merry', 'nimble', 'proud', 'quiet', 'quick', 'sharp', 'silly', 'stoic', 'swift', 'tender', 'vivid', 'witty', 'zen'];
const nouns = ['albattani', 'babbage', 'bohr', 'curie', 'darwin', 'einstein', 'euler', 'fermi', 'gauss', 'hopper', 'hypatia', 'kepler', 'lovelace', 'meitner', 'newton', 'noether', 'pascal', 'ritchie', 'shannon', 'tesla', 'thompson', 'turing', 'wozniak'];

/** A Docker-style random container name such as "brave_turing". */
export function generateName(): string {
  return `${adjectives[randomInt(adjectives.length)]}_${nouns[randomInt(nouns.length)]}`;
}
