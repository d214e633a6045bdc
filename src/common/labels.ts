/** Container labels with a meaning to hyperbox (shared by the engine and the CLI). */

/** A container with this label always cold-boots (`hyperbox run --no-clone`). */
export const NO_CLONE_LABEL = 'io.hyperbox.no-clone';
/** A container with this label joins the named pod's VM (`run --pod NAME`). */
export const POD_LABEL = 'io.hyperbox.pod';
