/** The Pod manifest the kube tests play (unit: planning it; VM tier: running it). */

export const podManifest = (hostDir: string, hostPort: number) => `
apiVersion: v1
kind: Pod
metadata:
  name: kp
spec:
  restartPolicy: Never
  volumes:
    - name: shared
      emptyDir: {}
    - name: host
      hostPath: {path: ${hostDir}}
  initContainers:
    - name: init
      image: busybox
      command: [sh, -c, "echo made-by-init > /data/index.html"]
      volumeMounts: [{name: shared, mountPath: /data}]
  containers:
    - name: web
      image: busybox
      command: [httpd, -f, -p, "8080", -h, /data]
      ports: [{containerPort: 8080, hostPort: ${hostPort}}]
      volumeMounts: [{name: shared, mountPath: /data, readOnly: true}]
    - name: client
      image: busybox
      command: [sh, -c]
      args: ["until wget -qO /out/page http://localhost:8080/; do sleep 0.2; done; echo GREETING=$GREETING; touch /data/x 2>&1 || true"]
      env: [{name: GREETING, value: hello}]
      volumeMounts: [{name: host, mountPath: /out}, {name: shared, mountPath: /data}]
`;
