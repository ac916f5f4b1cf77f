/**
 * A minimal ONNX graph writer on top of onnx-proto: named values, nodes, float32/int64 initializers,
 * dynamic-dimension inputs/outputs, and serialization either with the weights inline (small models)
 * or as external data in a side file (protobuf messages cap at 2 GiB, so 1.2B-sized graphs need it).
 *
 * Ownership: one OnnxGraph belongs to one build in onnx-builder.ts; nothing here knows Zamba2.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** Opset the step graph is written against (ReduceMean takes `axes` as an attribute up to 17). */
export const ONNX_OPSET = 17;
const IR_VERSION = 8;

export type ElemType = 'float32' | 'int64' | 'bool';
export type Dim = number | string;
export type AttrValue = number | number[] | string | { float: number };

const ELEM_TYPE_CODE: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
};

/** Where initializer bytes go: kept in the message, or appended to an external data file. */
export interface WeightSink {
  /** Returns the TensorProto fields that locate `bytes`. */
  place(bytes: Uint8Array): Partial<onnxProto.onnx.ITensorProto>;
}

export class InlineWeightSink implements WeightSink {
  place(bytes: Uint8Array): Partial<onnxProto.onnx.ITensorProto> {
    return { rawData: bytes };
  }
}

/**
 * Appends initializers to `<dir>/<fileName>` at 4 KiB-aligned offsets (so ORT can map them) and
 * records location/offset/length. Call close() once the graph is complete.
 */
export class ExternalWeightSink implements WeightSink {
  private readonly fd: number;
  private offsetBytes = 0;
  private static readonly ALIGN_BYTES = 4096;

  constructor(
    filePath: string,
    private readonly fileName: string,
  ) {
    this.fd = openSync(filePath, 'w');
  }

  place(bytes: Uint8Array): Partial<onnxProto.onnx.ITensorProto> {
    const pad = (ExternalWeightSink.ALIGN_BYTES - (this.offsetBytes % ExternalWeightSink.ALIGN_BYTES)) % ExternalWeightSink.ALIGN_BYTES;
    if (pad > 0) {
      writeSync(this.fd, new Uint8Array(pad));
      this.offsetBytes += pad;
    }
    const start = this.offsetBytes;
    let written = 0;
    while (written < bytes.byteLength) written += writeSync(this.fd, bytes, written, bytes.byteLength - written);
    this.offsetBytes += bytes.byteLength;
    return {
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: this.fileName },
        { key: 'offset', value: String(start) },
        { key: 'length', value: String(bytes.byteLength) },
      ],
    };
  }

  close(): void {
    closeSync(this.fd);
  }
}

function valueInfo(name: string, elemType: ElemType, dims: readonly Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM_TYPE_CODE[elemType],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, value: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') return { name, type: T.INT, i: value };
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  return { name, type: T.FLOAT, f: value.float };
}

export class OnnxGraph {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly constCache = new Map<string, string>();
  private counter = 0;

  constructor(private readonly sink: WeightSink) {}

  /** A fresh value name with a readable prefix. */
  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  input(name: string, elemType: ElemType, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: ElemType, dims: readonly Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** Adds a float32 weight; the bytes go to the sink (inline or external file). */
  weight(name: string, data: Float32Array, dims: readonly number[]): string {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.initializers.push({ name, dims: [...dims], dataType: onnx.TensorProto.DataType.FLOAT, ...this.sink.place(bytes) });
    return name;
  }

  /** Small constant, always inline and deduplicated by value. */
  constFloat(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const key = `f:${dims.join('x')}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit !== undefined) return hit;
    const name = this.fresh('constf');
    const data = Float32Array.from(values);
    this.initializers.push({ name, dims: [...dims], dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(data.buffer) });
    this.constCache.set(key, name);
    return name;
  }

  constInt64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const key = `i:${dims.join('x')}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit !== undefined) return hit;
    const name = this.fresh('consti');
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dims: [...dims], dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(data.buffer) });
    this.constCache.set(key, name);
    return name;
  }

  /** Adds a node and returns its output names (`outputCount` of them, or the given names). */
  nodeN(opType: string, inputs: readonly string[], outputs: number | readonly string[], attrs: Record<string, AttrValue> = {}): string[] {
    const outNames = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(opType.toLowerCase())) : [...outputs];
    this.nodes.push({
      opType,
      name: this.fresh(`n_${opType}`),
      input: [...inputs],
      output: outNames,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outNames;
  }

  /** Single-output node. */
  node(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, outputName?: string): string {
    const [out] = this.nodeN(opType, inputs, outputName === undefined ? 1 : [outputName], attrs);
    return out!;
  }

  encode(graphName: string): Uint8Array {
    const model: onnxProto.onnx.IModelProto = {
      irVersion: IR_VERSION,
      producerName: 'zamba2-serve',
      opsetImport: [{ domain: '', version: ONNX_OPSET }],
      graph: {
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    };
    return onnx.ModelProto.encode(model).finish();
  }
}
