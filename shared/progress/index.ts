// Progress of a job from its event stream: the reducer (state.ts) and the terminal renderer (render.ts).
export * from './state.ts';
export * from './render.ts';
