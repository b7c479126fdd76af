// AWS SDK for Go v2 client for the interop suite. Credentials come only from the default chain
// of config.LoadDefaultConfig (here: the container provider reading
// AWS_CONTAINER_CREDENTIALS_FULL_URI and the authorization token). Older v2 releases do not read
// AWS_ENDPOINT_URL, so the moto endpoint is passed in explicitly.
//
//	go-v2-client identity        -> {"arn": "..."}
//	go-v2-client movies TABLE    -> {"titles": [...]} after create, 3 puts, scan
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	ctx := context.Background()
	endpoint := os.Getenv("AWS_ENDPOINT_URL")
	resolver := aws.EndpointResolverWithOptionsFunc(
		func(service, region string, _ ...interface{}) (aws.Endpoint, error) {
			// Older releases sign with an empty region unless the endpoint names one.
			return aws.Endpoint{URL: endpoint, HostnameImmutable: true, SigningRegion: region}, nil
		})
	cfg, err := config.LoadDefaultConfig(ctx, config.WithEndpointResolverWithOptions(resolver))
	if err != nil {
		fail(err)
	}
	var result interface{}
	switch os.Args[1] {
	case "identity":
		out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			fail(err)
		}
		result = map[string]string{"arn": aws.ToString(out.Arn)}
	default:
		titles, err := movies(ctx, dynamodb.NewFromConfig(cfg), os.Args[2])
		if err != nil {
			fail(err)
		}
		result = map[string][]string{"titles": titles}
	}
	line, _ := json.Marshal(result)
	fmt.Println(string(line))
}

func movies(ctx context.Context, db *dynamodb.Client, table string) ([]string, error) {
	_, err := db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	var missing *types.ResourceNotFoundException
	if err != nil && !errors.As(err, &missing) {
		return nil, err
	}
	_, err = db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("title"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("title"), AttributeType: types.ScalarAttributeTypeS}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		return nil, err
	}
	for _, title := range []string{"Inception", "The Matrix", "Interstellar"} {
		_, err = db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(table),
			Item:      map[string]types.AttributeValue{"title": &types.AttributeValueMemberS{Value: title}},
		})
		if err != nil {
			return nil, err
		}
	}
	scan, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table)})
	if err != nil {
		return nil, err
	}
	titles := []string{}
	for _, item := range scan.Items {
		if s, ok := item["title"].(*types.AttributeValueMemberS); ok {
			titles = append(titles, s.Value)
		}
	}
	sort.Strings(titles)
	return titles, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
