/** The two folders of a job, as in the original's bucket layout and the runner's io_data_root. */
export const INPUTS_FOLDER = 'inputs';
export const OUTPUTS_FOLDER = 'outputs';
export type JobFolder = typeof INPUTS_FOLDER | typeof OUTPUTS_FOLDER;
